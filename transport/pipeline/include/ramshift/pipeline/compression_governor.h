// Decides, for `--codec auto`, whether batches are zstd-compressed, by measuring both ways.
// It starts sending raw: on a fast link a compressing first window is the costliest mistake,
// on a slow link a raw one costs little. The first window is a warm-up and measures nothing:
// it holds the connection's start (queues filling, the destination still registering its
// memory), which would make raw look slower than it is.
//
// Compression pays only when the link is slower than the compressor can feed it. Rather
// than guess either speed, the governor alternates: it measures the guest bytes per second
// the whole sender achieves while compressing and while sending raw (one window each), keeps
// the faster, and probes the other again every kHoldWindows windows, because both the link
// (other traffic, shaping) and the content (compressible or not) change during a migration.
// Thread-safe; queue threads call should_compress() per batch (one atomic load) and
// record() after each batch (one short mutex hold per batch, never per page).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace ramshift::pipeline {

class CompressionGovernor {
 public:
  using Clock = std::chrono::steady_clock;

  // Why 250 ms: long enough to drain a few MiB of socket buffers at 1 Gbit/s (so the window
  // measures the link, not the buffers), short enough to adapt several times in a migration.
  static constexpr std::chrono::milliseconds kWindow{250};
  // The first part of each window is discarded: bytes queued under the previous mode are
  // still draining.
  static constexpr std::chrono::milliseconds kSettle{50};
  // Windows spent in the chosen mode before probing the other again. Each probe that loses
  // doubles the hold (up to kMaxHoldWindows), so a mode that keeps losing — zstd on random
  // memory — costs ever less probing; a probe that wins resets it.
  static constexpr int kHoldWindows = 8;
  static constexpr int kMaxHoldWindows = 64;
  // Compressing is kept only when it moves this much more guest memory per second than
  // sending raw: within it the two are a tie, and raw wins a tie (it spends no CPU on
  // either end). Why 5%: a smaller edge is within one window's measuring error, and not
  // worth the CPU that compressing and decompressing take from both hosts.
  static constexpr double kCompressMargin = 1.05;

  // `enabled` false: never compress (codec without zstd). `always` true: always compress.
  CompressionGovernor(bool enabled, bool always);

  bool should_compress() const { return compress_.load(std::memory_order_relaxed); }
  void record(uint64_t guest_bytes, Clock::time_point now = Clock::now());

  struct Estimate {
    double compressed_bytes_per_s = 0;  // guest bytes/s while compressing (0 = not measured)
    double raw_bytes_per_s = 0;         // guest bytes/s while sending raw
    uint64_t switches = 0;
  };
  Estimate estimate() const;

 private:
  void evaluate(Clock::time_point now);

  const bool adaptive_;
  std::atomic<bool> compress_;
  mutable std::mutex mu_;
  Clock::time_point window_start_{};
  bool started_ = false;
  bool warmed_up_ = false;  // the first window has passed
  uint64_t window_bytes_ = 0;
  int windows_in_mode_ = 0;
  int hold_windows_ = kHoldWindows;
  bool probing_ = false;
  double rate_[2] = {0, 0};  // [0] raw, [1] compressed
  uint64_t switches_ = 0;
};

}  // namespace ramshift::pipeline
