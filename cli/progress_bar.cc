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
  // The same figures `query` and the report give (progress.h): guest bytes per second since
  // the start, and what is left of this round at that rate.
  double rate = p.throughput_bytes_per_s();
  std::string eta = "--";
  if (rate > 0 && p.remaining_bytes() > 0)
    eta = fmt::format("{:.1f}s", p.remaining_bytes() / rate);
  else if (p.remaining_bytes() == 0)
    eta = "0s";
  std::string line = fmt::format(
      "\r{} {} [{}{}] {:3.0f}%  {} / {}  {}  ETA {}   ", label_,
      p.status == migration::MigrationStatus::kPostcopyActive ? std::string("post-copy")
                                                              : fmt::format("round {}", p.round),
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
