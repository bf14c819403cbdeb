#include "switchover.h"

#include <algorithm>
#include <iterator>
#include <vector>

#include "ramshift/pipeline/zstd_context.h"

namespace ramshift::migration {

Result<PageSelection> fetch_dirty_pages(guest::SourceGuest& guest) {
  PageSelection sel;
  for (uint32_t r = 0; r < guest.regions().size(); ++r) {
    RS_ASSIGN_OR_RETURN(auto pages, guest.fetch_dirty(r));
    sel.emplace_back(std::move(pages));
  }
  return sel;
}

void merge_selection(PageSelection& into, const PageSelection& more) {
  for (size_t r = 0; r < into.size() && r < more.size(); ++r) {
    if (!into[r] || !more[r]) continue;  // a whole region is sent anyway
    std::vector<uint64_t> merged;
    std::set_union(into[r]->begin(), into[r]->end(), more[r]->begin(), more[r]->end(),
                   std::back_inserter(merged));
    into[r] = std::move(merged);
  }
}

namespace {
// Compress the device state only on a link slower than this. Why 150 MB/s: zstd level 1
// compressed a 1 MiB generation table at 290-323 MB/s and decompressed it at 290-490 MB/s on
// this 2-core host under load (zstd -b1), 6.7-23x smaller; sending S raw costs S/L, sending it
// compressed S/290M + S/(6.7 L) + S/290M at worst, which is less when L < 150 MB/s (a 1 Gbit/s
// link, 119 MB/s measured: yes; 10 Gbit/s or loopback: no).
constexpr double kCompressBelowBytesPerS = 150e6;
constexpr size_t kCompressFromBytes = 64 * 1024;  // below this a link moves it in < 0.6 ms
constexpr int kZstdLevel = 1;                     // the fastest level: the guest waits
}  // namespace

bool compress_device_state(uint64_t peer_capabilities, pipeline::CodecMode mode,
                           double link_bytes_per_s) {
  return (peer_capabilities & wire::kCapDeviceStateZstd) && pipeline::codec_may_compress(mode) &&
         link_bytes_per_s > 0 && link_bytes_per_s < kCompressBelowBytesPerS;
}

DeviceStateFrame encode_device_state(std::string state, bool compress) {
  DeviceStateFrame f;
  f.raw_bytes = state.size();
  const std::span<const std::byte> raw{reinterpret_cast<const std::byte*>(state.data()),
                                       state.size()};
  if (compress && state.size() >= kCompressFromBytes && state.size() <= wire::kMaxFrameBody) {
    std::vector<std::byte> packed(pipeline::ZstdCompressor::bound(state.size()));
    const size_t n = pipeline::ZstdCompressor(kZstdLevel).compress(raw, packed);
    if (n > 0 && n < state.size()) {
      const wire::DeviceStateZstd body{state.size(), std::span<const std::byte>(packed).first(n)};
      f.type = wire::FrameType::kDeviceStateZstd;
      f.body = wire::encode(body);
      return f;
    }
  }
  f.body = std::vector<std::byte>(raw.begin(), raw.end());
  return f;
}

DeviceStateFrame read_device_state(const guest::SourceGuest& guest, bool compress) {
  auto raw = guest.device_state();
  if (!raw) return DeviceStateFrame{.status = raw.status()};
  return encode_device_state(std::move(raw).value(), compress);
}

std::future<DeviceStateFrame> prepare_device_state(const guest::SourceGuest& guest, bool compress) {
  return std::async(std::launch::async,
                    [&guest, compress] { return read_device_state(guest, compress); });
}

double DowntimeClock::lap() {
  const auto now = Clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - lap_start_).count();
  lap_start_ = now;
  return ms;
}

double DowntimeClock::total_ms() const {
  return std::chrono::duration<double, std::milli>(lap_start_ - start_).count();
}

namespace {
SwitchoverGuard::Clock::time_point after_ms(SwitchoverGuard::Clock::time_point t, double ms) {
  return t + std::chrono::duration_cast<SwitchoverGuard::Clock::duration>(
                 std::chrono::duration<double, std::milli>(std::max(0.0, ms)));
}
}  // namespace

SwitchoverGuard::SwitchoverGuard(Clock::time_point pause, double limit_ms,
                                 const Decision& decision) {
  if (decision.worst_downtime_ms > limit_ms) return;
  tail_ms_ = decision.switchover_fixed_ms / 2 + decision.device_state_ms * decision.slowdown;
  handoff_tail_ms_ = decision.switchover_fixed_ms / 4;
  limit_ms_ = limit_ms;
  pause_ = pause;
  armed_ = true;
  deadline_ = after_ms(pause, limit_ms - tail_ms_);
}

void SwitchoverGuard::watch_verdict(bool destination_can_abort) {
  if (!armed_ || !destination_can_abort) {
    armed_ = false;
    return;
  }
  verdict_stage_ = true;
  tail_ms_ = handoff_tail_ms_;
  deadline_ = after_ms(pause_, limit_ms_ - tail_ms_);
}

}  // namespace ramshift::migration
