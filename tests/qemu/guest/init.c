/* The QEMU tests' guest: PID 1 of a one-file initramfs. It fills RS_MEM_MB of memory with
 * self-describing pages (half random, half structured, one in eight left zero), keeps
 * rewriting pages at RS_DIRTY_MBPS, re-checks a slice of memory every tick, and prints once
 * a second on the serial console:
 *
 *   heartbeat <n> gensum <sum of page generations> checked <pages> bad <pages> sweeps <k>
 *
 * A page's bytes follow from its index and generation alone, and the generations live in
 * guest memory too, so after a migration the destination's heartbeat continues the count
 * and "bad 0" means every page checked since boot held exactly what the guest last wrote.
 * The page contents are in pages.h (bare.c, the same guest without a kernel, shares them). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "pages.h"

static uint8_t* mem;
static uint32_t* gens;
static uint64_t pages;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  int con = open("/dev/ttyS0", O_WRONLY);
  if (con < 0) con = open("/dev/console", O_WRONLY);
  if (con >= 0) {
    dup2(con, 1);
    dup2(con, 2);
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *m = getenv("RS_MEM_MB"), *d = getenv("RS_DIRTY_MBPS");
  uint64_t mb = m ? strtoull(m, NULL, 10) : 64;
  double dirty = d ? atof(d) : 4;
  pages = mb * 1024 * 1024 / RS_PAGE;
  mem = mmap(NULL, pages * RS_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  gens = calloc(pages, sizeof *gens);
  if (mem == MAP_FAILED || !gens) {
    printf("guest: cannot allocate %llu MiB\n", (unsigned long long)mb);
    for (;;) pause();
  }
  for (uint64_t i = 0; i < pages; ++i)
    if (!rs_page_is_zero(i)) rs_write_page(mem, i, 0);
  printf("guest: filled %llu MiB, dirtying %.1f MB/s\n", (unsigned long long)mb, dirty);

  uint64_t rng = 88172645463325252ull, gensum = 0, checked = 0, bad = 0, cursor = 0, sweeps = 0;
  uint64_t beat = 0;
  double t_beat = now(), t_tick = now(), debt = 0;
  const uint64_t check_per_tick = pages / 40 + 1; /* a full sweep every ~4 s at 10 ticks/s */
  for (;;) {
    double t = now();
    /* At most a second's debt a tick, as bare.c: after a long stop (a paused VM) no burst of
     * catching up, and a guest slower than RS_DIRTY_MBPS (TCG, or throttled by auto-converge)
     * writes as fast as it can, its ticks bounded, where it fell ever further behind and its
     * heartbeat stopped. */
    debt += dirty * 1e6 / RS_PAGE * (t - t_tick > 1.0 ? 1.0 : t - t_tick);
    t_tick = t;
    while (debt >= 1) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      uint64_t i = rng % pages;
      debt -= 1;
      if (rs_page_is_zero(i)) continue;
      gens[i]++;
      gensum++;
      rs_write_page(mem, i, gens[i]);
    }
    for (uint64_t k = 0; k < check_per_tick; ++k) {
      if (!rs_check_page(mem, cursor, gens[cursor])) {
        if (bad < 5)
          printf("guest: page %llu does not match generation %u\n", (unsigned long long)cursor,
                 gens[cursor]);
        bad++;
      }
      checked++;
      if (++cursor == pages) {
        cursor = 0;
        sweeps++;
      }
    }
    if (t - t_beat >= 1.0) {
      t_beat = t;
      printf("heartbeat %llu gensum %llu checked %llu bad %llu sweeps %llu\n",
             (unsigned long long)++beat, (unsigned long long)gensum, (unsigned long long)checked,
             (unsigned long long)bad, (unsigned long long)sweeps);
    }
    usleep(100000);
  }
}
