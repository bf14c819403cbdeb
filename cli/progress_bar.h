// One-line progress bar on stderr: bytes, rate, ETA. Silent when stderr is not a terminal
// (logs and CI stay clean). Why hand-written: Debian 12 packages no C++ progress-bar library,
// and this is one formatted line redrawn with '\r'.
#pragma once

#include <string>

#include "ramshift/migration/progress.h"

namespace ramshift::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label, bool enabled);
  ~ProgressBar() { finish(); }
  void update(const migration::Progress& p);
  void finish();  // ends the line (once)

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
};

}  // namespace ramshift::cli
