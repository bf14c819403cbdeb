#include "ramshift/pipeline/compression_governor.h"

#include <algorithm>
#include <cmath>

#include "ramshift/base/log.h"

namespace ramshift::pipeline {

namespace {
double seconds(CompressionGovernor::Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

CompressionGovernor::CompressionGovernor(bool enabled, bool always)
    : adaptive_(enabled && !always), compress_(enabled && always) {}

void CompressionGovernor::record(uint64_t guest_bytes, Clock::time_point now) {
  if (!adaptive_) return;
  std::lock_guard lock(mu_);
  record_locked(guest_bytes, 0, 0, now);
}

void CompressionGovernor::record(const BatchSample& batch, Clock::time_point now) {
  if (!adaptive_) return;
  std::lock_guard lock(mu_);
  if (opening_ == Opening::kNotBegun && !started_) {
    opening_ = Opening::kSampling;
    opening_start_ = now;
    sample_every_.store(2, std::memory_order_relaxed);
  }
  if (opening_ == Opening::kSampling || opening_ == Opening::kMeasuring) {
    open(batch, now);
    return;
  }
  // The pages that travel, per second of the sender's time not spent on zero pages: both
  // modes skip zero pages alike, and a region full of them says nothing about either.
  const double zero_s = batch.payload_bytes == 0 ? seconds(batch.encode) / queues_ : 0;
  // A probe is judged by its batches after the settle (the ones before it were mostly
  // encoded under the previous mode).
  if (started_ && now - window_start_ > kSettle) window_[batch.compressed].add(batch);
  if (batch.compressed && compress_.load(std::memory_order_relaxed)) {
    zstd_run_.add(batch);
  } else if (batch.compressed && batch.payload_bytes > 0 && lost_prediction_ > 0) {
    // A hold's sample (one of zero pages only says nothing of the content).
    held_.weigh(0.75);
    held_.add(batch);
    held_samples_ += 1;
  }
  record_locked(batch.payload_bytes, zero_s, batch.wire_bytes, now);
}

void CompressionGovernor::Totals::weigh(double w) {
  batches *= w;
  guest *= w;
  payload *= w;
  wire *= w;
  encode_s *= w;
  zero_s *= w;
}

void CompressionGovernor::Totals::add(const BatchSample& b) {
  ++batches;
  guest += static_cast<double>(b.guest_bytes);
  payload += static_cast<double>(b.payload_bytes);
  wire += static_cast<double>(b.wire_bytes);
  encode_s += seconds(b.encode);
  if (b.payload_bytes == 0) zero_s += seconds(b.encode);
}

void CompressionGovernor::open(const BatchSample& batch, Clock::time_point now) {
  queues_ = std::max(queues_, batch.queue + 1);
  totals_[batch.compressed].add(batch);
  if (opening_ == Opening::kSampling) {
    if (totals_[1].batches < kOpeningSamples) return;
    sample_every_.store(0, std::memory_order_relaxed);
    opening_ = Opening::kMeasuring;
    period_start_ = now;
    return;
  }
  // Measuring: raw's rate over the whole sender, period by period (a zstd batch still in
  // flight from the sampling counts here too; it is one of a few dozen).
  period_.add(batch);
  // Rates are of the pages that travel, per second not spent on zero pages (as in windows).
  const double secs = seconds(now - period_start_) - period_.zero_s / queues_;
  if (secs < seconds(kMinProbe)) return;
  const double raw_rate = period_.payload / secs;
  const double path_rate = period_.wire / secs;  // wire bytes/s
  // zstd's speed and ratio on such pages, from its samples.
  Totals& z = totals_[1];
  const double cpu = z.encode_s > 0 ? queues_ * z.payload / z.encode_s : 0;
  const double ratio = z.wire > 0 ? z.payload / z.wire : 1;
  const double zstd_rate = predict(z, path_rate);
  votes_ = zstd_rate > kCompressMargin * raw_rate ? votes_ + 1 : 0;
  const bool clear_loss = zstd_rate * kClearRatio < raw_rate;
  log::debug(
      "codec auto: opening: raw {:.1f} MB/s ({:.1f} MB/s on the wire); zstd predicted {:.1f} "
      "MB/s ({} queues compress {:.1f} MB/s of pages, ratio {:.2f})",
      raw_rate / 1e6, path_rate / 1e6, zstd_rate / 1e6, queues_, cpu / 1e6, ratio);
  period_start_ = now;
  period_ = {};
  z.weigh(0.5);
  sample_every_.store(clear_loss ? 0 : kUnclearSampling, std::memory_order_relaxed);
  if (votes_ >= 2)
    end_opening(true, raw_rate, zstd_rate, path_rate, now);
  else if (now - opening_start_ >= kWindow)
    end_opening(false, raw_rate, clear_loss ? zstd_rate : 0, path_rate, now);
}

double CompressionGovernor::predict(const Totals& z, double path_rate) const {
  const double cpu = z.encode_s > 0 ? queues_ * z.payload / z.encode_s : 0;
  const double ratio = z.wire > 0 ? z.payload / z.wire : 1;
  return std::min(cpu, path_rate * ratio);
}

void CompressionGovernor::end_opening(bool compress, double raw_rate, double zstd_rate,
                                      double path_rate, Clock::time_point now) {
  opening_ = Opening::kDone;
  sample_every_.store(0, std::memory_order_relaxed);
  started_ = warmed_up_ = true;
  mode_start_ = now;
  window_batches_ = 0;
  new_window(now);
  path_rate_ = path_rate;
  if (compress) {
    // A probe like any other: zstd is measured and decided against raw's last rate.
    rate_[0] = raw_rate;
    switch_to(true, true);
    return;
  }
  // Raw goes on; its first window is measured afresh. After a clear loss zstd's rate is the
  // prediction, so it is probed when raw falls below it, or, as after a lost probe of the
  // length of the shortest one, when the hold runs out. An unclear prediction (zstd_rate 0)
  // is none: zstd is probed after raw's first window, as without an opening.
  rate_[1] = zstd_rate;
  if (zstd_rate == 0) return;
  // The prediction stands for the content zstd lost on: the hold samples from here on.
  lost_prediction_ = zstd_rate;
  const Totals& z = totals_[1];
  if (z.payload > 0 && raw_rate > 0) hold_sampling(z, raw_rate / (z.payload / z.batches));
  const double loss = raw_rate > 0 ? std::max(0.0, 1 - zstd_rate / raw_rate) : 0;
  const double wait = seconds(kSettle + kMinProbe) * loss / kProbeBudget;
  hold_windows_ = std::clamp(static_cast<int>(std::ceil(wait / seconds(kWindow))), kHoldWindows,
                             kMaxHoldWindows);
}

void CompressionGovernor::record_locked(uint64_t bytes, double zero_s, uint64_t wire,
                                        Clock::time_point now) {
  if (!started_) {
    started_ = true;
    window_start_ = mode_start_ = now;
  }
  // A batch recorded at the settle's end was mostly encoded before it: count only later ones.
  if (now - window_start_ > kSettle) {
    window_bytes_ += bytes;
    window_wire_ += wire;
    window_zero_s_ += zero_s;
  }
  ++window_batches_;
  if (now - window_start_ >= kWindow || probe_is_clear(now)) evaluate(now);
}

double CompressionGovernor::measured_seconds(Clock::time_point now) const {
  return seconds(now - window_start_ - kSettle) - window_zero_s_;
}

void CompressionGovernor::new_window(Clock::time_point now) {
  window_start_ = now;
  window_bytes_ = window_wire_ = 0;
  window_zero_s_ = 0;
  window_[0] = window_[1] = {};
}

double CompressionGovernor::judged(bool mode, double measured) const {
  const Totals& w = window_[mode];
  if (!probing_ || path_rate_ <= 0 || w.batches < kProbeBatches || w.payload <= 0) return measured;
  // What the probe's batches move on this path: zstd's as predicted (its window sold it
  // short while raw's backlog drained), raw's at most what the path took over raw's holds
  // (its window flattered it while it filled the buffers zstd had left empty; its CPU cost
  // is in what it measured).
  if (mode) return predict(w, path_rate_);
  return std::min(measured, path_rate_ * w.payload / w.wire);
}

bool CompressionGovernor::probe_is_clear(Clock::time_point now) const {
  if (!probing_ || measured_seconds(now) < seconds(kMinProbe)) return false;
  const bool mode = compress_.load(std::memory_order_relaxed);
  // With per-batch samples a probe is clear only once it can be judged by its batches: the
  // first ones may wait behind the other mode's backlog.
  if (path_rate_ > 0 && window_[mode].batches < kProbeBatches) return false;
  const double rate = judged(mode, static_cast<double>(window_bytes_) / measured_seconds(now));
  const double other = rate_[!mode];
  return rate > kClearRatio * other || rate * kClearRatio < other;
}

void CompressionGovernor::evaluate(Clock::time_point now) {
  const double batches_per_s = window_batches_ / seconds(now - window_start_);
  window_batches_ = 0;
  if (!warmed_up_) {
    warmed_up_ = true;
    new_window(now);
    return;
  }
  const double secs = measured_seconds(now);
  window_zero_s_ = 0;
  if (secs < seconds(kMinProbe)) {  // mostly zero pages: nothing measured, nothing decided
    new_window(now);
    return;
  }
  const bool mode = compress_.load(std::memory_order_relaxed);
  const double measured = static_cast<double>(window_bytes_) / secs;
  const double rate = judged(mode, measured);
  if (const Totals& w = window_[mode]; w.encode_s > 0 && w.wire > 0)
    log::debug(
        "codec auto: {} {} {:.1f} MB/s of pages measured, {:.1f} predicted ({} batches: "
        "{:.1f} MB/s on {} queues, ratio {:.2f}; path {:.1f} MB/s)",
        mode ? "zstd" : "raw", probing_ ? "probe" : "window", measured / 1e6,
        predict(w, path_rate_) / 1e6, w.batches, queues_ * w.payload / w.encode_s / 1e6, queues_,
        w.payload / w.wire, path_rate_ / 1e6);
  // A probe's rate is its own; the incumbent's is averaged over its windows (each window
  // weighs half), so one slow window of noise or of a region's content decides nothing.
  const bool fresh = probing_ || rate_[mode] == 0;
  rate_[mode] = fresh ? rate : (rate_[mode] + measured) / 2;
  // The path's rate: wire bytes per second of raw's windows once the buffers are full (not
  // a probe's, not the first after a switch).
  if (!mode && window_wire_ > 0 && !probing_ && windows_in_mode_ > 0) {
    const double path = static_cast<double>(window_wire_) / secs;
    path_rate_ = path_rate_ == 0 ? path : (path_rate_ + path) / 2;
  }
  new_window(now);
  ++windows_in_mode_;
  // zstd's batches of older windows weigh half: raw is judged against its latest content.
  zstd_run_.weigh(0.5);

  // Each mode's score is its rate, compressing's discounted by the margin raw wins ties by.
  const double score[2] = {rate_[0], rate_[1] / kCompressMargin};
  const double last_score = mode ? measured / kCompressMargin : measured;
  if (rate_[!mode] == 0) {
    switch_to(!mode, true);  // the other mode has never been measured: measure it now
  } else if (probing_) {
    const bool winner = score[1] > score[0];
    finish_probe(now - mode_start_);
    if (winner != mode) switch_to(winner, false);
    if (!winner && zstd_run_.batches > 0) {  // raw holds: zstd's samples watch what follows
      lost_prediction_ = predict(zstd_run_, path_rate_);
      if (lost_prediction_ > 0) hold_sampling(zstd_run_, batches_per_s);
      zstd_run_ = {};
    }
  } else if (windows_in_mode_ >= hold_windows_ || last_score < 0.95 * score[!mode] ||
             (!mode && samples_favour_zstd())) {
    // Time to check the other mode again — at once if this window was slower than the
    // other mode was when last measured, or zstd's samples show content it compresses
    // clearly better than what it lost on (the content or the link changed).
    switch_to(!mode, true);
  } else if (!mode && lost_prediction_ > 0 && held_.batches > 0) {
    hold_sampling(held_, batches_per_s);
  }
  log::debug("codec auto: {} window {:.1f} MB/s (average {:.1f}, other mode {:.1f}); next {}",
             mode ? "zstd" : "raw", measured / 1e6, rate_[mode] / 1e6, rate_[!mode] / 1e6,
             compress_.load(std::memory_order_relaxed) ? "zstd" : "raw");
}

void CompressionGovernor::finish_probe(Clock::duration probe_length) {
  probing_ = false;
  // The next probe of the loser costs about what this one did: its length times the share
  // of throughput it gives up. Wait until that is kProbeBudget of the time in between.
  const double fast = std::max(rate_[0], rate_[1]), slow = std::min(rate_[0], rate_[1]);
  const double loss = fast > 0 ? 1 - slow / fast : 0;
  const double wait = seconds(probe_length) * loss / kProbeBudget;
  const int windows = static_cast<int>(std::ceil(wait / seconds(kWindow)));
  hold_windows_ = std::clamp(windows, kHoldWindows, kMaxHoldWindows);
}

bool CompressionGovernor::samples_favour_zstd() const {
  if (lost_prediction_ <= 0 || held_samples_ < kHoldSamples || path_rate_ <= 0) return false;
  // Against the prediction where zstd lost, not its measured rate there: one stalled probe
  // window (1 MB/s on a loaded host) would otherwise rule out every later region.
  const double now = predict(held_, path_rate_);
  const bool favour = now >= kClearRatio * lost_prediction_ && now > kCompressMargin * rate_[0];
  if (favour)
    log::debug("codec auto: zstd's samples predict {:.1f} MB/s of pages, {:.1f} where it lost",
               now / 1e6, lost_prediction_ / 1e6);
  return favour;
}

void CompressionGovernor::hold_sampling(const Totals& z, double batches_per_s) {
  // A sample costs its encode time (`z`: zstd's batches on recent content); the queue
  // threads have queues_ seconds per second, of which samples may take kHoldSampleShare.
  double every = z.encode_s / z.batches * batches_per_s / (kHoldSampleShare * queues_);
  every = std::clamp(std::ceil(every), static_cast<double>(kUnclearSampling), 1e6);
  sample_every_.store(static_cast<uint32_t>(every), std::memory_order_relaxed);
}

void CompressionGovernor::switch_to(bool mode, bool probing) {
  sample_every_.store(0, std::memory_order_relaxed);
  if (mode) {  // zstd's run starts afresh; a hold ends
    lost_prediction_ = 0;
    zstd_run_ = {};
  }
  held_ = {};
  held_samples_ = 0;
  probing_ = probing;
  compress_.store(mode, std::memory_order_relaxed);
  windows_in_mode_ = 0;
  mode_start_ = window_start_;
  ++switches_;
}

CompressionGovernor::Estimate CompressionGovernor::estimate() const {
  std::lock_guard lock(mu_);
  return {rate_[1], rate_[0], switches_};
}

}  // namespace ramshift::pipeline
