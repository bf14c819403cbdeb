#include "switchover_tuner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ramshift::qemu {

MigrationSnapshot MigrationSnapshot::from_query_migrate(const nlohmann::json& q) {
  MigrationSnapshot s;
  if (!q.is_object()) return s;
  s.status = q.value("status", "");
  s.total_ms = q.value("total-time", 0.0);
  s.setup_ms = q.value("setup-time", 0.0);
  s.expected_downtime_ms = q.value("expected-downtime", 0.0);
  if (q.contains("ram") && q["ram"].is_object()) {
    const auto& r = q["ram"];
    s.remaining_bytes = r.value("remaining", uint64_t{0});
    s.transferred_bytes = r.value("transferred", uint64_t{0});
    s.dirty_sync_count = r.value("dirty-sync-count", uint64_t{0});
    s.dirty_pages_rate = r.value("dirty-pages-rate", 0.0);
    s.page_size = r.value("page-size", uint64_t{4096});
    s.mbps = r.value("mbps", 0.0);
  }
  return s;
}

nlohmann::json MigrationSnapshot::to_json() const {
  return {{"status", status},
          {"total-time", total_ms},
          {"setup-time", setup_ms},
          {"expected-downtime", expected_downtime_ms},
          {"ram",
           {{"remaining", remaining_bytes},
            {"transferred", transferred_bytes},
            {"dirty-sync-count", dirty_sync_count},
            {"dirty-pages-rate", dirty_pages_rate},
            {"page-size", page_size},
            {"mbps", mbps}}}};
}

namespace {

// A limit QEMU can be given: whole ms, at least 1, never over the ceiling.
uint64_t bounded_ms(double ms, double ceiling_ms) {
  return static_cast<uint64_t>(std::max(1.0, std::min(std::ceil(ms), ceiling_ms)));
}

}  // namespace

SwitchoverTuner::SwitchoverTuner(SwitchoverTunerConfig config)
    : config_(config),
      limit_ms_(bounded_ms(config.floor_ms.value_or(kFloorMs), config.ceiling_ms)) {
  report_.floor_ms = static_cast<double>(limit_ms_);
  report_.floor_source = config_.floor_ms ? "given" : "fixed";
  report_.ceiling_ms = config_.ceiling_ms;
  report_.switchover_bandwidth_supported = config_.set_switchover_bandwidth;
  report_.downtime_limit_steps.push_back(
      {.at_ms = 0,
       .downtime_limit_ms = limit_ms_,
       .remaining_bytes = 0,
       .dirty_sync_count = 0,
       .reason = config_.floor_ms
                     ? "floor as given, kept while iterations shrink what is left"
                     : "floor (a switch-over's fixed part), kept while iterations shrink what "
                       "is left"});
}

uint64_t SwitchoverTuner::initial_downtime_limit_ms() const {
  return report_.downtime_limit_steps.front().downtime_limit_ms;
}

TunerAction SwitchoverTuner::observe(const MigrationSnapshot& s) {
  TunerAction action;
  // Only pre-copy is tuned: in setup nothing moves yet, and from `device` on the switch-over
  // is under way.
  if (s.status != "active") return action;
  update_rate(s, action);
  if (s.dirty_sync_count > last_sync_) {
    // dirty-sync-count is 1 through the bulk pass; each increase closes one or more
    // iterations (several between two polls when they are short).
    if (last_sync_ >= 1) {
      note_rates(s);
      on_iteration(s, action);
    }
    last_sync_ = s.dirty_sync_count;
  }
  return action;
}

void SwitchoverTuner::update_rate(const MigrationSnapshot& s, TunerAction& action) {
  if (!samples_.empty() && s.total_ms <= samples_.back().first) return;
  samples_.emplace_back(s.total_ms, s.transferred_bytes);
  // Keep the newest sample at or before the window's start, so the span covers the window.
  while (samples_.size() > 2 && samples_[1].first <= s.total_ms - kRateWindowMs)
    samples_.pop_front();
  const double span_ms = samples_.back().first - samples_.front().first;
  if (span_ms < kRateMinSpanMs || samples_.back().second < samples_.front().second) return;
  rate_ = static_cast<double>(samples_.back().second - samples_.front().second) / span_ms * 1000;
  if (!config_.set_switchover_bandwidth || *rate_ < 1) return;
  const auto last = report_.switchover_bandwidth;
  if (last &&
      std::abs(*rate_ - static_cast<double>(*last)) <= kRateChange * static_cast<double>(*last))
    return;
  action.switchover_bandwidth = static_cast<uint64_t>(*rate_);
  report_.switchover_bandwidth = action.switchover_bandwidth;
  ++report_.switchover_bandwidth_updates;
}

void SwitchoverTuner::note_rates(const MigrationSnapshot& s) {
  if (!rate_) return;
  // For the report: how the guest's dirtying compared with the link at the last iteration,
  // what the floor was held against. QEMU's dirty-pages-rate is over its last sync period of
  // at least 1 s (0 until one ended).
  report_.floor_link_rate = *rate_;
  report_.floor_dirty_rate = s.dirty_pages_rate * static_cast<double>(s.page_size);
}

void SwitchoverTuner::on_iteration(const MigrationSnapshot& s, TunerAction& action) {
  const uint64_t left = s.remaining_bytes;
  // What is left fits the limit at the sustained rate: QEMU is about to switch over.
  const uint64_t lowest = best_remaining_.value_or(left);  // before this iteration
  const bool fits =
      rate_ && static_cast<double>(left) <= *rate_ * static_cast<double>(limit_ms_) / 1000;
  if (!best_remaining_ ||
      static_cast<double>(left) <= kShrink * static_cast<double>(*best_remaining_))
    stalled_ = 0;
  else if (!fits)
    ++stalled_;
  best_remaining_ = std::min(best_remaining_.value_or(left), left);
  if (stalled_ < kStallIterations || static_cast<double>(limit_ms_) >= config_.ceiling_ms) return;
  stalled_ = 0;
  limit_ms_ =
      static_cast<uint64_t>(std::min(config_.ceiling_ms, 2.0 * static_cast<double>(limit_ms_)));
  action.downtime_limit_ms = limit_ms_;
  report_.downtime_limit_steps.push_back(
      {.at_ms = s.total_ms,
       .downtime_limit_ms = limit_ms_,
       .remaining_bytes = left,
       .dirty_sync_count = s.dirty_sync_count,
       .reason =
           fmt::format("{} iterations without a new low (lowest before {} bytes, {} left now{})",
                       kStallIterations, lowest, left,
                       rate_ ? fmt::format(", {:.0f} ms at {:.1f} MB/s",
                                           static_cast<double>(left) / *rate_ * 1000, *rate_ / 1e6)
                             : std::string())});
}

}  // namespace ramshift::qemu
