#include "progress_bar.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "ramshift/base/units.h"

namespace ramshift::cli {

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && isatty(STDERR_FILENO)) {}

void ProgressBar::update(const migration::Progress& p) {
  if (!enabled_) return;
  constexpr int kWidth = 28;
  double frac =
      p.total_bytes ? std::min(1.0, static_cast<double>(p.done_bytes) / p.total_bytes) : 0;
  int filled = static_cast<int>(frac * kWidth);
  double rate = p.elapsed_s > 0 ? p.done_bytes / p.elapsed_s : 0;
  std::string eta = "--";
  if (rate > 0 && p.done_bytes < p.total_bytes)
    eta = fmt::format("{:.1f}s", (p.total_bytes - p.done_bytes) / rate);
  else if (p.done_bytes >= p.total_bytes)
    eta = "0s";
  std::string line =
      fmt::format("\r{} {} [{}{}] {:3.0f}%  {} / {}  {}  ETA {}   ", label_,
                  p.postcopy ? std::string("post-copy") : fmt::format("round {}", p.round),
                  std::string(filled, '#'), std::string(kWidth - filled, '.'), frac * 100,
                  format_bytes(p.done_bytes), format_bytes(p.total_bytes), format_rate(rate), eta);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

}  // namespace ramshift::cli
