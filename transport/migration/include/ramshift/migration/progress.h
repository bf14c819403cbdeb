// Progress of a running migration, reported about ten times a second to a callback
// (the CLI draws its progress bar from it). Called from the session's control thread.
#pragma once

#include <cstdint>
#include <functional>

namespace ramshift::migration {

struct Progress {
  uint64_t total_bytes = 0;  // guest bytes to move in this round
  uint64_t done_bytes = 0;   // guest bytes handled (sent, skipped as zero, or placed)
  uint64_t wire_bytes = 0;
  uint32_t round = 0;
  double elapsed_s = 0;
  bool paused = false;  // the source guest is paused: this is the switchover round
  // Post-copy: the guest runs on the destination; total/done count the pages still to move.
  bool postcopy = false;
};

using ProgressFn = std::function<void(const Progress&)>;

}  // namespace ramshift::migration
