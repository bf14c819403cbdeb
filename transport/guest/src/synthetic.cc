#include "ramshift/guest/synthetic.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

#include "ramshift/base/byte_order.h"
#include "ramshift/base/units.h"
#include "ramshift/pipeline/checksum.h"

namespace ramshift::guest {
namespace {

constexpr uint64_t kTag = 0x5253474553540000ull;  // "RSGEST" in the high bytes
constexpr size_t kHeader = 24;

// The pattern's number in a page header (byte 20), as the synthetic guest always wrote it.
uint32_t pattern_code(Pattern p) {
  switch (p) {
    case Pattern::kRandom:
      return 1;
    case Pattern::kDelta:
      return 2;
    case Pattern::kZero:
      return 3;
    default:
      return 0;  // mixed
  }
}

inline uint64_t next(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// burst=N's period. Why 400 ms: the small rounds near the end of a migration last 1-30 ms
// and round 1 a few hundred ms, so a round falls in a burst or a lull, or spans both.
constexpr std::chrono::milliseconds kBurstPeriod{400};

constexpr std::string_view kWords[] = {"page ",  "guest ", "dirty ",  "queue ",
                                       "round ", "the ",   "memory ", "0000 "};

}  // namespace

std::string SyntheticSpec::to_string() const {
  // burst only when set: a steady guest's device state reads as before this key existed.
  return fmt::format("size={},dirty-rate={},pattern={},threads={},seed={},tracking={}{}", size,
                     dirty_rate, pattern_name(pattern), threads, seed,
                     dirty_mechanism_name(tracking),
                     burst > 1 ? fmt::format(",burst={}", burst) : "");
}

Result<SyntheticSpec> SyntheticSpec::parse(std::string_view text) {
  SyntheticSpec s;
  bool have_size = false;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos)
      return Status(
          ErrorCode::kInvalidArgument,
          fmt::format("synthetic guest: '{}' is not key=value (e.g. size=1G,dirty-rate=20M)",
                      item));
    std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "size") {
      RS_ASSIGN_OR_RETURN(s.size, parse_size(value));
      have_size = true;
    } else if (key == "dirty-rate") {
      RS_ASSIGN_OR_RETURN(s.dirty_rate, parse_rate(value));
    } else if (key == "pattern") {
      auto p = pattern_from_name(value);
      if (!p || *p == Pattern::kText)
        return Status(
            ErrorCode::kInvalidArgument,
            fmt::format("synthetic guest: unknown pattern '{}' (mixed, random, delta, zero)",
                        value));
      s.pattern = *p;
    } else if (key == "threads") {
      RS_ASSIGN_OR_RETURN(uint64_t n, parse_size(value));
      if (n < 1 || n > 64)
        return Status(ErrorCode::kInvalidArgument, "synthetic guest: threads must be 1..64");
      s.threads = static_cast<uint32_t>(n);
    } else if (key == "tracking") {
      if (value == "auto")
        s.tracking = DirtyMechanism::kAuto;
      else if (value == "pagemap-scan")
        s.tracking = DirtyMechanism::kPagemapScan;
      else if (value == "wp-faults")
        s.tracking = DirtyMechanism::kFaults;
      else
        return Status(
            ErrorCode::kInvalidArgument,
            fmt::format("synthetic guest: unknown tracking '{}' (auto, pagemap-scan, wp-faults)",
                        value));
    } else if (key == "burst") {
      RS_ASSIGN_OR_RETURN(uint64_t n, parse_size(value));
      if (n < 1 || n > 16)
        return Status(ErrorCode::kInvalidArgument, "synthetic guest: burst must be 1..16");
      s.burst = static_cast<uint32_t>(n);
    } else if (key == "seed") {
      RS_ASSIGN_OR_RETURN(s.seed, parse_size(value));
    } else {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("synthetic guest: unknown key '{}' (size, dirty-rate, pattern, "
                                "threads, seed, tracking, burst)",
                                key));
    }
  }
  if (!have_size && s.size == 0)
    return Status(ErrorCode::kInvalidArgument, "synthetic guest: size=0");
  if (s.size < host_page_size() * 16)
    return Status(ErrorCode::kInvalidArgument, "synthetic guest: size must be at least 64 KiB");
  return s;
}

void SyntheticGuest::write_page(uint64_t page, uint64_t generation, uint64_t rng) {
  const size_t ps = host_page_size();
  std::byte* p = memory_.data() + page * ps;
  if (spec_.pattern == Pattern::kZero && generation > 1) {
    std::memset(p, 0, ps);
    return;
  }
  std::byte* body = p + kHeader;
  const size_t body_len = ps - kHeader;
  uint64_t s = rng | 1;
  switch (spec_.pattern) {
    case Pattern::kRandom:
      for (size_t i = 0; i + 8 <= body_len; i += 8) store_le<uint64_t>(body + i, next(s));
      break;
    case Pattern::kDelta:
      if (load_le<uint64_t>(p) != (page ^ kTag)) {  // first write: a text body
        for (size_t i = 0; i < body_len; ++i)
          body[i] = static_cast<std::byte>('a' + (page + i) % 26);
      } else {
        body[next(s) % body_len] = static_cast<std::byte>(next(s));
      }
      break;
    default: {  // mixed (and the first fill of zero): random words, then text
      size_t half = body_len / 2 / 8 * 8;
      for (size_t i = 0; i < half; i += 8) store_le<uint64_t>(body + i, next(s));
      size_t i = half;
      while (i < body_len) {
        std::string_view w = kWords[next(s) & 7];
        size_t n = std::min(w.size(), body_len - i);
        std::memcpy(body + i, w.data(), n);
        i += n;
      }
    }
  }
  store_le<uint64_t>(p, page ^ kTag);
  store_le<uint64_t>(p + 8, generation);
  store_le<uint32_t>(p + 16, pipeline::crc32c({body, body_len}));
  store_le<uint32_t>(p + 20, pattern_code(spec_.pattern));
}

Result<std::unique_ptr<SyntheticGuest>> SyntheticGuest::create(const SyntheticSpec& spec) {
  std::unique_ptr<SyntheticGuest> g(new SyntheticGuest());
  RS_ASSIGN_OR_RETURN(g->owned_, MappedMemory::anonymous(spec.size));
  g->init_memory(spec, g->owned_.bytes());
  const uint64_t pages = g->memory_.size() / host_page_size();
  g->generations_.assign(pages, 0);
  uint64_t s = spec.seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint64_t p = 0; p < pages; ++p) {
    // mixed leaves a quarter of the pages zero, like a booted guest's free memory
    if (spec.pattern == Pattern::kMixed && (next(s) & 3) == 0) continue;
    g->write_page(p, 1, next(s));
    g->generations_[p] = 1;
  }
  g->start_threads(false);
  return g;
}

void SyntheticGuest::init_memory(const SyntheticSpec& spec, std::span<std::byte> memory) {
  spec_ = spec;
  const size_t ps = host_page_size();
  memory_ = memory.subspan(0, (spec.size + ps - 1) / ps * ps);
  regions_.push_back(Region{"ram", spec.size, memory_});
}

Result<std::string> SyntheticGuest::device_state() const {
  std::string state = spec_.to_string();
  state.push_back('\0');
  const size_t at = state.size();
  state.resize(at + generations_.size() * 4);
  auto* out = reinterpret_cast<std::byte*>(state.data() + at);
  for (size_t p = 0; p < generations_.size(); ++p) store_le<uint32_t>(out + 4 * p, generations_[p]);
  return state;
}

uint64_t SyntheticGuest::device_state_bytes() const {
  return spec_.to_string().size() + 1 + generations_.size() * 4;
}

Result<std::unique_ptr<SyntheticGuest>> SyntheticGuest::adopt_device_state(
    std::string_view state, std::span<std::byte> memory) {
  const size_t nul = state.find('\0');
  RS_ASSIGN_OR_RETURN(auto spec, SyntheticSpec::parse(state.substr(0, nul)));
  if (nul == std::string_view::npos) return adopt(spec, memory);
  const std::string_view table = state.substr(nul + 1);
  const uint64_t pages = (spec.size + host_page_size() - 1) / host_page_size();
  if (table.size() != pages * 4)
    return Status(ErrorCode::kProtocol,
                  fmt::format("synthetic guest: device state has a generation table of {} bytes; "
                              "a {}-page guest needs {}",
                              table.size(), pages, pages * 4));
  if (memory.size() < spec.size)
    return Status(ErrorCode::kMismatch, "synthetic guest: memory smaller than its spec");
  std::unique_ptr<SyntheticGuest> g(new SyntheticGuest());
  g->init_memory(spec, memory);
  g->generations_.resize(pages);
  const auto* in = reinterpret_cast<const std::byte*>(table.data());
  for (uint64_t p = 0; p < pages; ++p) g->generations_[p] = load_le<uint32_t>(in + 4 * p);
  g->workload_salt_ = std::random_device{}();
  g->start_threads(true);
  return g;
}

Result<std::unique_ptr<SyntheticGuest>> SyntheticGuest::adopt(const SyntheticSpec& spec,
                                                              std::span<std::byte> memory) {
  if (memory.size() < spec.size)
    return Status(ErrorCode::kMismatch, "synthetic guest: memory smaller than its spec");
  std::unique_ptr<SyntheticGuest> g(new SyntheticGuest());
  g->init_memory(spec, memory);
  const size_t ps = host_page_size();
  g->generations_.resize(g->memory_.size() / ps);
  for (uint64_t p = 0; p < g->generations_.size(); ++p) {
    const std::byte* page = g->memory_.data() + p * ps;
    if (load_le<uint64_t>(page) == (p ^ kTag))
      g->generations_[p] = static_cast<uint32_t>(load_le<uint64_t>(page + 8));
  }
  g->workload_salt_ = std::random_device{}();
  g->start_threads(true);
  return g;
}

SyntheticGuest::~SyntheticGuest() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  tracker_.reset();  // before the memory goes
}

std::string SyntheticGuest::describe() const {
  return fmt::format("synthetic guest {} ({}), dirtying {}/s with {} thread(s)",
                     format_bytes(spec_.size), pattern_name(spec_.pattern),
                     format_bytes(spec_.dirty_rate), spec_.threads);
}

void SyntheticGuest::start_threads(bool paused) {
  pause_ = paused;
  for (uint32_t t = 0; t < spec_.threads; ++t) threads_.emplace_back([this, t] { workload(t); });
  if (paused) pause();
}

void SyntheticGuest::workload(uint32_t thread) {
  using Clock = std::chrono::steady_clock;
  const size_t ps = host_page_size();
  const uint64_t pages = memory_.size() / ps;
  uint64_t s = (spec_.seed + 7919 * (thread + 1) + workload_salt_) * 0x9E3779B97F4A7C15ull + 3;
  // burst=N: N times the rate for 1/N of each period, idle for the rest (the same average).
  const double per_thread = static_cast<double>(spec_.dirty_rate) * spec_.burst / spec_.threads;
  const auto epoch = Clock::now();
  const auto burst_len = kBurstPeriod / spec_.burst;
  auto next_write = Clock::now();
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (pause_ || stop_) {
        ++parked_;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !pause_ || stop_; });
        --parked_;
        if (stop_) return;
        next_write = Clock::now();
      }
    }
    if (spec_.burst > 1) {
      const auto now = Clock::now();
      const auto phase = (now - epoch) % kBurstPeriod;
      if (phase >= burst_len) {  // a lull: wait for the next burst, or a pause
        std::unique_lock lock(mu_);
        cv_.wait_until(lock, now - phase + kBurstPeriod, [&] { return pause_ || stop_; });
        next_write = Clock::now();
        continue;
      }
    }
    if (per_thread <= 0) {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(50));
      continue;
    }
    {
      const uint64_t page = next(s) % pages;
      std::lock_guard page_lock(page_locks_[page % page_locks_.size()]);
      // A page's first rewrite is generation 2 at least: generation 1 is the initial fill
      // (and pattern=zero zeroes pages from generation 2 on).
      const uint32_t generation = std::max<uint32_t>(generations_[page], 1) + 1;
      write_page(page, generation, next(s));
      generations_[page] = generation;
    }
    writes_.fetch_add(1, std::memory_order_relaxed);
    double slow = 100.0 / std::max(1, 100 - throttle_.load(std::memory_order_relaxed));
    next_write += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(ps / per_thread * slow));
    auto now = Clock::now();
    if (next_write > now)
      std::this_thread::sleep_until(next_write);
    else if (now - next_write > std::chrono::milliseconds(100))
      next_write = now;  // no bursts
  }
}

void SyntheticGuest::pause() {
  std::unique_lock lock(mu_);
  pause_ = true;
  cv_.notify_all();
  cv_.wait(lock, [&] { return parked_ == threads_.size(); });
}

void SyntheticGuest::resume() {
  std::lock_guard lock(mu_);
  pause_ = false;
  cv_.notify_all();
}

void SyntheticGuest::set_throttle(int percent) { throttle_ = std::clamp(percent, 0, 99); }

Status SyntheticGuest::start_dirty_log() {
  RS_ASSIGN_OR_RETURN(tracker_, DirtyTracker::start(memory_, spec_.tracking));
  return Status::ok();
}

void SyntheticGuest::stop_dirty_log() { tracker_.reset(); }

Result<std::vector<uint64_t>> SyntheticGuest::fetch_dirty(uint32_t) {
  if (!tracker_) return Status(ErrorCode::kInternal, "dirty log not started");
  return tracker_->fetch_and_clear();
}

Status SyntheticGuest::verify() const {
  const size_t ps = host_page_size();
  const uint64_t pages = memory_.size() / ps;
  for (uint64_t p = 0; p < pages; ++p) {
    const std::byte* page = memory_.data() + p * ps;
    const uint32_t want = generations_[p];
    const bool zero_expected = want == 0 || (spec_.pattern == Pattern::kZero && want > 1);
    uint64_t tag = load_le<uint64_t>(page);
    if (tag == 0 && load_le<uint64_t>(page + 8) == 0 &&
        std::all_of(page, page + ps, [](std::byte b) { return b == std::byte{0}; })) {
      if (zero_expected) continue;
      return Status(
          ErrorCode::kCorrupt,
          fmt::format("guest page {} is zero but generation {} was written to it", p, want));
    }
    if (tag != (p ^ kTag))
      return Status(ErrorCode::kCorrupt,
                    fmt::format("guest page {} holds the header of page {}", p, tag ^ kTag));
    const uint64_t held = load_le<uint64_t>(page + 8);
    if (zero_expected || held != want)
      return Status(ErrorCode::kCorrupt,
                    fmt::format("guest page {} holds generation {}; the guest last wrote {}{}", p,
                                held, want, held < want ? " (an older write: a lost update)" : ""));
    uint32_t crc = pipeline::crc32c({page + kHeader, ps - kHeader});
    if (crc != load_le<uint32_t>(page + 16))
      return Status(ErrorCode::kCorrupt,
                    fmt::format("guest page {} (generation {}) fails its checksum", p,
                                load_le<uint64_t>(page + 8)));
  }
  return Status::ok();
}

}  // namespace ramshift::guest
