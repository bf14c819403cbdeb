#include "bench_wire.h"

#include <fmt/format.h>

#include "ramshift/wire/codec_io.h"

namespace ramshift::bench::wire {
namespace {

using ramshift::wire::BodyReader;
using ramshift::wire::BodyWriter;
using ramshift::wire::SpanWriter;

constexpr size_t kControlHeader = 8;  // magic u32, version u16, kind u16
constexpr size_t kConfigBytes = kControlHeader + 40;
constexpr size_t kReadyFixedBytes = kControlHeader + 32;  // then u32 per rkey
constexpr uint32_t kFlagKeysPerQueue = 1;
constexpr uint32_t kMaxKeyQueues = 65;  // 64 data queues and the control queue
constexpr size_t kResultBytes = kControlHeader + 32;
constexpr size_t kMaxRkeys = 4096;

BodyWriter with_header(ControlKind kind) {
  BodyWriter w;
  w.write<uint32_t>(kControlMagic);
  w.write<uint16_t>(kVersion);
  w.write<uint16_t>(static_cast<uint16_t>(kind));
  return w;
}

// The body after the control header; callers check the length first, with their own
// messages, so the reader's own checks only back them up.
BodyReader body_of(std::span<const std::byte> msg, const char* what) {
  return BodyReader(msg.subspan(kControlHeader), what);
}

Status bad(const std::string& what) {
  return Status(ErrorCode::kProtocol, "bench control message: " + what);
}

}  // namespace

std::vector<std::byte> encode(const Config& c) {
  BodyWriter w = with_header(ControlKind::kConfig);
  w.write<uint32_t>(c.page_size);
  w.write<uint32_t>(c.batch_pages);
  w.write<uint32_t>(c.queues);
  w.write<uint32_t>(c.codec);
  w.write<int32_t>(c.zstd_level);
  w.write<uint32_t>(c.keys_per_queue ? kFlagKeysPerQueue : 0);
  w.write<uint64_t>(c.working_set_bytes);
  w.write<uint64_t>(c.cache_bytes);
  return w.take();
}

std::vector<std::byte> encode(const Ready& r) {
  const size_t n = r.placed ? r.key.rkeys.size() : 0;
  BodyWriter w = with_header(ControlKind::kReady);
  w.write<uint32_t>(r.placed ? 1 : 0);
  w.write<uint32_t>(static_cast<uint32_t>(n));
  w.write<uint64_t>(r.placed ? r.key.address : 0);
  w.write<uint64_t>(r.placed ? r.key.length : 0);
  w.write<uint64_t>(r.placed ? r.key.chunk_bytes : 0);
  for (size_t i = 0; i < n; ++i) w.write<uint32_t>(r.key.rkeys[i]);
  if (n > 0 && !r.key.queue_rkeys.empty()) {
    w.write<uint32_t>(r.key.queues);
    for (uint32_t k : r.key.queue_rkeys) w.write<uint32_t>(k);
  }
  return w.take();
}

std::vector<std::byte> encode(const ServerResult& r) {
  BodyWriter w = with_header(ControlKind::kResult);
  w.write<uint64_t>(r.cpu_ns);
  w.write<uint64_t>(r.batches);
  w.write<uint64_t>(r.pages);
  w.write<uint64_t>(r.dropped_frames);
  return w.take();
}

std::vector<std::byte> encode_finish() { return with_header(ControlKind::kFinish).take(); }

std::vector<std::byte> encode_error(const std::string& message) {
  auto text = message.substr(0, 4000);
  BodyWriter w = with_header(ControlKind::kError);
  w.write_bytes({reinterpret_cast<const std::byte*>(text.data()), text.size()});
  return w.take();
}

Result<ControlKind> control_kind(std::span<const std::byte> msg) {
  if (msg.size() < kControlHeader)
    return bad(fmt::format("{} bytes, shorter than a header", msg.size()));
  BodyReader r(msg, "control");
  if (r.read<uint32_t>("magic") != kControlMagic)
    return bad("magic is not RSBC (not a ramshift bench peer?)");
  uint16_t version = r.read<uint16_t>("version");
  if (version != kVersion)
    return bad(fmt::format("version {} (this ramshift speaks {})", version, kVersion));
  uint16_t kind = r.read<uint16_t>("kind");
  if (kind == static_cast<uint16_t>(ControlKind::kError)) {
    auto text = r.read_rest();
    return Status(ErrorCode::kProtocol,
                  "the bench peer reported: " +
                      std::string(reinterpret_cast<const char*>(text.data()), text.size()));
  }
  if (kind < 1 || kind > 4) return bad(fmt::format("unknown kind {}", kind));
  return static_cast<ControlKind>(kind);
}

Result<Config> decode_config(std::span<const std::byte> msg) {
  if (msg.size() != kConfigBytes)
    return bad(fmt::format("config is {} bytes, not {}", msg.size(), kConfigBytes));
  BodyReader r = body_of(msg, "config");
  Config c;
  c.page_size = r.read<uint32_t>("page_size");
  c.batch_pages = r.read<uint32_t>("batch_pages");
  c.queues = r.read<uint32_t>("queues");
  uint32_t codec = r.read<uint32_t>("codec");
  c.zstd_level = r.read<int32_t>("zstd_level");
  // Flags: builds before them sent 0 here; bits not known here are ignored, as all were.
  c.keys_per_queue = (r.read<uint32_t>("flags") & kFlagKeysPerQueue) != 0;
  c.working_set_bytes = r.read<uint64_t>("working_set_bytes");
  c.cache_bytes = r.read<uint64_t>("cache_bytes");
  RS_RETURN_IF_ERROR(r.finish());
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
  if (msg.size() < kReadyFixedBytes) return bad("ready message too short");
  BodyReader r = body_of(msg, "ready");
  Ready ready;
  uint32_t placed = r.read<uint32_t>("placed");
  uint32_t n = r.read<uint32_t>("rkeys");
  if (placed > 1) return bad(fmt::format("ready.placed {}", placed));
  const size_t chunk_keys_end = kReadyFixedBytes + 4ull * n;
  if (n > kMaxRkeys || msg.size() < chunk_keys_end ||
      (msg.size() > chunk_keys_end && msg.size() < chunk_keys_end + 4))
    return bad(fmt::format("ready carries {} rkeys in {} bytes", n, msg.size()));
  ready.placed = placed == 1;
  ready.key.address = r.read<uint64_t>("address");
  ready.key.length = r.read<uint64_t>("length");
  ready.key.chunk_bytes = r.read<uint64_t>("chunk_bytes");
  for (uint32_t i = 0; i < n; ++i) ready.key.rkeys.push_back(r.read<uint32_t>("rkey"));
  if (msg.size() > chunk_keys_end) {
    const uint32_t queues = r.read<uint32_t>("queues");
    if (queues == 0 || queues > kMaxKeyQueues ||
        msg.size() != chunk_keys_end + 4 + 4ull * n * queues)
      return bad(fmt::format("ready carries {} keys per chunk for {} chunks in {} bytes", queues, n,
                             msg.size()));
    ready.key.queues = queues;
    for (uint64_t i = 0; i < uint64_t{n} * queues; ++i)
      ready.key.queue_rkeys.push_back(r.read<uint32_t>("queue rkey"));
  }
  RS_RETURN_IF_ERROR(r.finish());
  if (ready.placed) {
    const auto& k = ready.key;
    uint64_t chunks = k.chunk_bytes == 0 ? 1 : (k.length + k.chunk_bytes - 1) / k.chunk_bytes;
    if (k.length == 0 || chunks != n)
      return bad(fmt::format("ready key: {} bytes in chunks of {} but {} rkeys", k.length,
                             k.chunk_bytes, n));
  }
  return ready;
}

Result<ServerResult> decode_result(std::span<const std::byte> msg) {
  if (msg.size() != kResultBytes) return bad(fmt::format("result is {} bytes", msg.size()));
  BodyReader r = body_of(msg, "result");
  ServerResult result;
  result.cpu_ns = r.read<uint64_t>("cpu_ns");
  result.batches = r.read<uint64_t>("batches");
  result.pages = r.read<uint64_t>("pages");
  result.dropped_frames = r.read<uint64_t>("dropped_frames");
  RS_RETURN_IF_ERROR(r.finish());
  return result;
}

void store_data_header(std::byte* out, DataKind kind, uint64_t seq) {
  SpanWriter w({out, kDataHeaderBytes});
  w.write<uint32_t>(kDataMagic);
  w.write<uint32_t>(static_cast<uint32_t>(kind));
  w.write<uint64_t>(seq);
}

Result<DataHeader> load_data_header(std::span<const std::byte> msg) {
  if (msg.size() < kDataHeaderBytes)
    return Status(ErrorCode::kProtocol, fmt::format("bench data message of {} bytes", msg.size()));
  // Only the header: the batch body after it is the pipeline's to read.
  BodyReader r(msg.first(kDataHeaderBytes), "data");
  if (r.read<uint32_t>("magic") != kDataMagic)
    return Status(ErrorCode::kProtocol, "bench data message: magic is not RSBD");
  uint32_t kind = r.read<uint32_t>("kind");
  if (kind < 1 || kind > 3)
    return Status(ErrorCode::kProtocol, fmt::format("bench data message: kind {}", kind));
  return DataHeader{static_cast<DataKind>(kind), r.read<uint64_t>("seq")};
}

}  // namespace ramshift::bench::wire
