# Shell helpers the host benchmarks share; source it: . "$(dirname "${BASH_SOURCE[0]}")/stats.sh"
# (bench/softroce/lib.sh keeps its own: that folder alone is carried into the soft-RoCE VM.)

# median [NONE]: the median of the numbers on stdin, one a line; NONE (default 0) when there
# are none.
median() {
  sort -g | awk -v none="${1:-0}" '{a[NR]=$1}
    END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); else print none}'
}
