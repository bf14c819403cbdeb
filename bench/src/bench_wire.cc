#include "bench_wire.h"

#include <fmt/format.h>

#include <cstring>

#include "ramshift/base/byte_order.h"

namespace ramshift::bench::wire {
namespace {

constexpr size_t kControlHeader = 8;  // magic u32, version u16, kind u16
constexpr size_t kConfigBytes = kControlHeader + 40;
constexpr size_t kResultBytes = kControlHeader + 24;
constexpr size_t kMaxRkeys = 4096;

std::vector<std::byte> with_header(ControlKind kind, size_t body) {
  std::vector<std::byte> out(kControlHeader + body);
  store_le<uint32_t>(out.data(), kControlMagic);
  store_le<uint16_t>(out.data() + 4, kVersion);
  store_le<uint16_t>(out.data() + 6, static_cast<uint16_t>(kind));
  return out;
}

Status bad(const std::string& what) {
  return Status(ErrorCode::kProtocol, "bench control message: " + what);
}

}  // namespace

std::vector<std::byte> encode(const Config& c) {
  auto out = with_header(ControlKind::kConfig, kConfigBytes - kControlHeader);
  std::byte* p = out.data() + kControlHeader;
  store_le<uint32_t>(p, c.page_size);
  store_le<uint32_t>(p + 4, c.batch_pages);
  store_le<uint32_t>(p + 8, c.queues);
  store_le<uint32_t>(p + 12, c.codec);
  store_le<int32_t>(p + 16, c.zstd_level);
  store_le<uint32_t>(p + 20, 0);
  store_le<uint64_t>(p + 24, c.working_set_bytes);
  store_le<uint64_t>(p + 32, c.cache_bytes);
  return out;
}

std::vector<std::byte> encode(const Ready& r) {
  const size_t n = r.placed ? r.key.rkeys.size() : 0;
  auto out = with_header(ControlKind::kReady, 32 + 4 * n);
  std::byte* p = out.data() + kControlHeader;
  store_le<uint32_t>(p, r.placed ? 1 : 0);
  store_le<uint32_t>(p + 4, static_cast<uint32_t>(n));
  store_le<uint64_t>(p + 8, r.placed ? r.key.address : 0);
  store_le<uint64_t>(p + 16, r.placed ? r.key.length : 0);
  store_le<uint64_t>(p + 24, r.placed ? r.key.chunk_bytes : 0);
  for (size_t i = 0; i < n; ++i) store_le<uint32_t>(p + 32 + 4 * i, r.key.rkeys[i]);
  return out;
}

std::vector<std::byte> encode(const ServerResult& r) {
  auto out = with_header(ControlKind::kResult, kResultBytes - kControlHeader);
  std::byte* p = out.data() + kControlHeader;
  store_le<uint64_t>(p, r.cpu_ns);
  store_le<uint64_t>(p + 8, r.batches);
  store_le<uint64_t>(p + 16, r.pages);
  return out;
}

std::vector<std::byte> encode_finish() { return with_header(ControlKind::kFinish, 0); }

std::vector<std::byte> encode_error(const std::string& message) {
  auto text = message.substr(0, 4000);
  auto out = with_header(ControlKind::kError, text.size());
  std::memcpy(out.data() + kControlHeader, text.data(), text.size());
  return out;
}

Result<ControlKind> control_kind(std::span<const std::byte> msg) {
  if (msg.size() < kControlHeader)
    return bad(fmt::format("{} bytes, shorter than a header", msg.size()));
  if (load_le<uint32_t>(msg.data()) != kControlMagic)
    return bad("magic is not RSBC (not a ramshift bench peer?)");
  uint16_t version = load_le<uint16_t>(msg.data() + 4);
  if (version != kVersion)
    return bad(fmt::format("version {} (this ramshift speaks {})", version, kVersion));
  uint16_t kind = load_le<uint16_t>(msg.data() + 6);
  if (kind == static_cast<uint16_t>(ControlKind::kError)) {
    std::string text(reinterpret_cast<const char*>(msg.data()) + kControlHeader,
                     msg.size() - kControlHeader);
    return Status(ErrorCode::kProtocol, "the bench peer reported: " + text);
  }
  if (kind < 1 || kind > 4) return bad(fmt::format("unknown kind {}", kind));
  return static_cast<ControlKind>(kind);
}

Result<Config> decode_config(std::span<const std::byte> msg) {
  if (msg.size() != kConfigBytes)
    return bad(fmt::format("config is {} bytes, not {}", msg.size(), kConfigBytes));
  const std::byte* p = msg.data() + kControlHeader;
  Config c;
  c.page_size = load_le<uint32_t>(p);
  c.batch_pages = load_le<uint32_t>(p + 4);
  c.queues = load_le<uint32_t>(p + 8);
  uint32_t codec = load_le<uint32_t>(p + 12);
  c.zstd_level = load_le<int32_t>(p + 16);
  c.working_set_bytes = load_le<uint64_t>(p + 24);
  c.cache_bytes = load_le<uint64_t>(p + 32);
  if (c.page_size < 1024 || c.page_size > 65536 || (c.page_size & (c.page_size - 1)))
    return bad(fmt::format("page_size {} is not a power of two in 1024..65536", c.page_size));
  if (c.batch_pages < 1 || c.batch_pages > 1024)
    return bad(fmt::format("batch_pages {} is outside 1..1024", c.batch_pages));
  if (c.queues < 1 || c.queues > 64)
    return bad(fmt::format("queues {} is outside 1..64", c.queues));
  if (codec > 5) return bad(fmt::format("codec {} is unknown", codec));
  c.codec = static_cast<uint8_t>(codec);
  if (c.zstd_level < -7 || c.zstd_level > 19)
    return bad(fmt::format("zstd_level {} is outside -7..19", c.zstd_level));
  if (c.working_set_bytes == 0 || c.working_set_bytes > (4ull << 30) ||
      c.working_set_bytes % c.page_size != 0)
    return bad(fmt::format("working_set_bytes {} is not a whole number of pages up to 4 GiB",
                           c.working_set_bytes));
  if (c.cache_bytes > (4ull << 30))
    return bad(fmt::format("cache_bytes {} exceeds 4 GiB", c.cache_bytes));
  return c;
}

Result<Ready> decode_ready(std::span<const std::byte> msg) {
  if (msg.size() < kControlHeader + 32) return bad("ready message too short");
  const std::byte* p = msg.data() + kControlHeader;
  Ready r;
  uint32_t placed = load_le<uint32_t>(p);
  uint32_t n = load_le<uint32_t>(p + 4);
  if (placed > 1) return bad(fmt::format("ready.placed {}", placed));
  if (n > kMaxRkeys || msg.size() != kControlHeader + 32 + 4ull * n)
    return bad(fmt::format("ready carries {} rkeys in {} bytes", n, msg.size()));
  r.placed = placed == 1;
  r.key.address = load_le<uint64_t>(p + 8);
  r.key.length = load_le<uint64_t>(p + 16);
  r.key.chunk_bytes = load_le<uint64_t>(p + 24);
  for (uint32_t i = 0; i < n; ++i) r.key.rkeys.push_back(load_le<uint32_t>(p + 32 + 4 * i));
  if (r.placed) {
    uint64_t chunks =
        r.key.chunk_bytes == 0 ? 1 : (r.key.length + r.key.chunk_bytes - 1) / r.key.chunk_bytes;
    if (r.key.length == 0 || chunks != n)
      return bad(fmt::format("ready key: {} bytes in chunks of {} but {} rkeys", r.key.length,
                             r.key.chunk_bytes, n));
  }
  return r;
}

Result<ServerResult> decode_result(std::span<const std::byte> msg) {
  if (msg.size() != kResultBytes) return bad(fmt::format("result is {} bytes", msg.size()));
  const std::byte* p = msg.data() + kControlHeader;
  return ServerResult{load_le<uint64_t>(p), load_le<uint64_t>(p + 8), load_le<uint64_t>(p + 16)};
}

void store_data_header(std::byte* out, DataKind kind, uint64_t seq) {
  store_le<uint32_t>(out, kDataMagic);
  store_le<uint32_t>(out + 4, static_cast<uint32_t>(kind));
  store_le<uint64_t>(out + 8, seq);
}

Result<DataHeader> load_data_header(std::span<const std::byte> msg) {
  if (msg.size() < kDataHeaderBytes)
    return Status(ErrorCode::kProtocol, fmt::format("bench data message of {} bytes", msg.size()));
  if (load_le<uint32_t>(msg.data()) != kDataMagic)
    return Status(ErrorCode::kProtocol, "bench data message: magic is not RSBD");
  uint32_t kind = load_le<uint32_t>(msg.data() + 4);
  if (kind < 1 || kind > 3)
    return Status(ErrorCode::kProtocol, fmt::format("bench data message: kind {}", kind));
  return DataHeader{static_cast<DataKind>(kind), load_le<uint64_t>(msg.data() + 8)};
}

}  // namespace ramshift::bench::wire
