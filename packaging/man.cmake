# Writes the man page ramshift(1) from the binary's own --help, so it never disagrees with
# the program: cmake -DRAMSHIFT=path/to/ramshift -DOUT=ramshift.1 -DVERSION=x.y.z -P man.cmake
# One section per command (and per subcommand, e.g. qemu-bridge source), in the order the
# top-level help lists them.

# roff text of a block of help output, shown as it is (no filling).
function(roff_block text out)
  string(REPLACE "\\" "\\e" text "${text}")
  string(REPLACE "-" "\\-" text "${text}")
  # A line that starts with . or ' would be read as a request.
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  set(${out} ".nf\n${text}\n.fi\n" PARENT_SCOPE)
endfunction()

# The names listed under "Subcommands:" in a help text.
function(subcommands text out)
  set(names "")
  string(FIND "${text}" "\nSubcommands:\n" at)
  if(at GREATER -1)
    string(SUBSTRING "${text}" ${at} -1 tail)
    string(REPLACE "\n" ";" lines "${tail}")
    foreach(line IN LISTS lines)
      if(line MATCHES "^  ([a-z][a-z0-9-]*)( |$)")
        list(APPEND names "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endif()
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

function(help out)
  execute_process(COMMAND "${RAMSHIFT}" ${ARGN} --help OUTPUT_VARIABLE text
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ramshift ${ARGN} --help failed (${rc})")
  endif()
  # CLI11 prints the path it was run by; the page names the installed command.
  string(REPLACE "${RAMSHIFT}" "ramshift" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

help(top)
roff_block("${top}" top_roff)
set(page ".TH RAMSHIFT 1 \"\" \"ramshift ${VERSION}\" \"User Commands\"\n")
string(APPEND page ".SH NAME\nramshift \\- RDMA-accelerated live migration of virtual machines\n")
string(APPEND page ".SH SYNOPSIS\n.B ramshift\n[\\fIOPTIONS\\fR] \\fICOMMAND\\fR "
                   "[\\fICOMMAND OPTIONS\\fR]\n")
string(APPEND page ".SH DESCRIPTION\nramshift moves guest memory over several parallel queues "
                   "(tcp, rdma), as zero markers, XBZRLE deltas or zstd batches, every frame "
                   "checksummed and every page verified before the destination takes over.\n"
                   ".PP\n${top_roff}")
string(APPEND page ".SH COMMANDS\n")
subcommands("${top}" commands)
foreach(cmd IN LISTS commands)
  help(text ${cmd})
  roff_block("${text}" r)
  string(APPEND page ".SS \"ramshift ${cmd}\"\n${r}")
  subcommands("${text}" subs)
  foreach(sub IN LISTS subs)
    help(text ${cmd} ${sub})
    roff_block("${text}" r)
    string(APPEND page ".SS \"ramshift ${cmd} ${sub}\"\n${r}")
  endforeach()
endforeach()
string(APPEND page ".SH EXIT STATUS\n"
                   ".TP\n0\nthe migration completed and was verified\n"
                   ".TP\n1\nit failed; the source guest was not changed\n"
                   ".TP\n2\na usage or set-up error (bad URI or codec, missing image, port in "
                   "use, host unreachable, size mismatch, receiver disk full)\n")
string(APPEND page ".SH SEE ALSO\nThe user guide, docs/user-guide.md in the sources; "
                   "\\fBramshift.h\\fR for the C API of libramshift.\n")
file(WRITE "${OUT}" "${page}")
