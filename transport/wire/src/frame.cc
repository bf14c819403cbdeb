#include "ramshift/wire/frame.h"

#include <fmt/format.h>

#include <bit>

#include "ramshift/base/byte_order.h"
#include "ramshift/pipeline/batch_format.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/pipeline/codec.h"
#include "ramshift/wire/codec_io.h"

namespace ramshift::wire {

const char* frame_type_name(FrameType t) {
  switch (t) {
    case FrameType::kHello:
      return "hello";
    case FrameType::kRegionTable:
      return "region_table";
    case FrameType::kReady:
      return "ready";
    case FrameType::kPageBatch:
      return "page_batch";
    case FrameType::kRoundEnd:
      return "round_end";
    case FrameType::kSwitchover:
      return "switchover";
    case FrameType::kDeviceState:
      return "device_state";
    case FrameType::kDigest:
      return "digest";
    case FrameType::kCommit:
      return "commit";
    case FrameType::kError:
      return "error";
    case FrameType::kBye:
      return "bye";
    case FrameType::kMemoryKeys:
      return "memory_keys";
    case FrameType::kHandOff:
      return "handoff";
    case FrameType::kVerifyMismatch:
      return "verify_mismatch";
    case FrameType::kPostcopyStart:
      return "postcopy_start";
    case FrameType::kPageRequest:
      return "page_request";
    case FrameType::kPostcopyPages:
      return "postcopy_pages";
    case FrameType::kPostcopyRunning:
      return "postcopy_running";
    case FrameType::kPostcopyPlaced:
      return "postcopy_placed";
    case FrameType::kPostcopyDiscard:
      return "postcopy_discard";
    case FrameType::kPostcopyDiscarded:
      return "postcopy_discarded";
    case FrameType::kSwitchoverAbort:
      return "switchover_abort";
    case FrameType::kSwitchoverAborted:
      return "switchover_aborted";
    case FrameType::kDeviceStateZstd:
      return "device_state_zstd";
  }
  return "unknown";
}

Result<FrameView> parse_frame(std::span<const std::byte> message) {
  auto bad = [](std::string m) { return Status(ErrorCode::kProtocol, "frame: " + std::move(m)); };
  if (message.size() < kFrameHeaderBytes)
    return bad(fmt::format("{} bytes is shorter than the {}-byte header", message.size(),
                           kFrameHeaderBytes));
  const std::byte* h = message.data();
  uint32_t magic = load_le<uint32_t>(h);
  if (magic != kFrameMagic)
    return bad(
        fmt::format("magic 0x{:08x} is not 0x{:08x} (not a ramshift peer?)", magic, kFrameMagic));
  uint8_t type = static_cast<uint8_t>(h[4]);
  if (type < static_cast<uint8_t>(FrameType::kHello) || type > static_cast<uint8_t>(kLastFrameType))
    return bad(fmt::format("type {} is unknown", type));
  if (h[5] != std::byte{0} || load_le<uint16_t>(h + 6) != 0)
    return bad("flags/reserved bytes are not zero");
  uint32_t length = load_le<uint32_t>(h + 8);
  if (length > kMaxFrameBody)
    return bad(fmt::format("length {} exceeds the {}-byte limit", length, kMaxFrameBody));
  if (length != message.size() - kFrameHeaderBytes)
    return bad(fmt::format("length {} but {} body bytes arrived", length,
                           message.size() - kFrameHeaderBytes));
  auto body = message.subspan(kFrameHeaderBytes);
  uint32_t crc = load_le<uint32_t>(h + 12);
  uint32_t actual = pipeline::crc32c(body);
  if (crc != actual)
    return Status(ErrorCode::kCorrupt,
                  fmt::format("frame: {} body CRC32C 0x{:08x} does not match header 0x{:08x}",
                              frame_type_name(static_cast<FrameType>(type)), actual, crc));
  return FrameView{static_cast<FrameType>(type), body};
}

std::array<std::byte, kFrameHeaderBytes> frame_header(FrameType type,
                                                      std::span<const std::byte> body) {
  std::span<const std::byte> one[1] = {body};
  return frame_header(type, std::span<const std::span<const std::byte>>(one));
}

std::array<std::byte, kFrameHeaderBytes> frame_header(
    FrameType type, std::span<const std::span<const std::byte>> body_segments) {
  size_t length = 0;
  uint32_t crc = 0;
  for (auto s : body_segments) {
    length += s.size();
    crc = pipeline::crc32c(s, crc);
  }
  std::array<std::byte, kFrameHeaderBytes> h{};
  store_le<uint32_t>(h.data(), kFrameMagic);
  h[4] = static_cast<std::byte>(type);
  store_le<uint32_t>(h.data() + 8, static_cast<uint32_t>(length));
  store_le<uint32_t>(h.data() + 12, crc);
  return h;
}

// ---- hello -----------------------------------------------------------------------------

std::vector<std::byte> encode(const Hello& m) {
  BodyWriter w;
  w.write(m.version_min);
  w.write(m.version_max);
  w.write(m.capabilities);
  w.write(m.page_size);
  w.write(m.data_queues);
  w.write(m.batch_pages);
  w.write(m.codec);
  w.write(m.xbzrle_cache_per_queue);
  w.write(m.session_id);
  w.write_string(m.software);
  return w.take();
}

Result<Hello> decode_hello(std::span<const std::byte> body) {
  BodyReader r(body, "hello");
  Hello m;
  m.version_min = r.read<uint16_t>("version_min");
  m.version_max = r.read<uint16_t>("version_max");
  m.capabilities = r.read<uint64_t>("capabilities");
  m.page_size = r.read<uint32_t>("page_size");
  m.data_queues = r.read<uint32_t>("data_queues");
  m.batch_pages = r.read<uint32_t>("batch_pages");
  m.codec = r.read<uint8_t>("codec");
  m.xbzrle_cache_per_queue = r.read<uint64_t>("xbzrle_cache_per_queue");
  m.session_id = r.read<uint64_t>("session_id");
  m.software = r.read_string("software", kMaxNameBytes);
  if (r.ok()) {
    if (m.version_min > m.version_max)
      r.reject("version_min",
               fmt::format("{} is above version_max {}", m.version_min, m.version_max));
    if (!std::has_single_bit(m.page_size) || m.page_size < 1024 || m.page_size > 65536)
      r.reject("page_size", fmt::format("{} is not a power of two in 1024..65536", m.page_size));
    if (m.data_queues < 1 || m.data_queues > kMaxDataQueues)
      r.reject("data_queues", fmt::format("{} is outside 1..{}", m.data_queues, kMaxDataQueues));
    if (m.batch_pages < 1 || m.batch_pages > pipeline::kMaxBatchPages)
      r.reject("batch_pages",
               fmt::format("{} is outside 1..{}", m.batch_pages, pipeline::kMaxBatchPages));
    else if (uint64_t{m.batch_pages} * m.page_size > (16u << 20))
      r.reject("batch_pages",
               fmt::format("{} pages of {} bytes exceed 16 MiB", m.batch_pages, m.page_size));
    if (m.codec > static_cast<uint8_t>(pipeline::CodecMode::kXbzrleZstd))
      r.reject("codec", fmt::format("{} is unknown", m.codec));
    if (m.xbzrle_cache_per_queue > kMaxCachePerQueue)
      r.reject("xbzrle_cache_per_queue", fmt::format("{} bytes exceeds the {}-byte limit",
                                                     m.xbzrle_cache_per_queue, kMaxCachePerQueue));
  }
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

// ---- region table ----------------------------------------------------------------------

std::vector<std::byte> encode(const RegionTable& m) {
  BodyWriter w;
  w.write(static_cast<uint32_t>(m.regions.size()));
  for (const auto& r : m.regions) {
    w.write(r.id);
    w.write(r.bytes);
    w.write_string(r.name);
  }
  return w.take();
}

Result<RegionTable> decode_region_table(std::span<const std::byte> body) {
  BodyReader r(body, "region_table");
  RegionTable m;
  uint32_t count = r.read<uint32_t>("count");
  if (r.ok() && (count < 1 || count > kMaxRegions))
    r.reject("count", fmt::format("{} is outside 1..{}", count, kMaxRegions));
  for (uint32_t i = 0; r.ok() && i < count; ++i) {
    RegionInfo info;
    info.id = r.read<uint32_t>("id");
    info.bytes = r.read<uint64_t>("bytes");
    info.name = r.read_string("name", kMaxNameBytes);
    if (!r.ok()) break;
    if (info.id != i)
      r.reject("id", fmt::format("region {} has id {}; ids must be 0,1,2...", i, info.id));
    if (info.bytes == 0 || info.bytes > kMaxRegionBytes)
      r.reject("bytes",
               fmt::format("region {} size {} is outside 1..{}", i, info.bytes, kMaxRegionBytes));
    m.regions.push_back(std::move(info));
  }
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

// ---- memory keys -------------------------------------------------------------------------

std::vector<std::byte> encode(const MemoryKeys& m) {
  BodyWriter w;
  w.write(static_cast<uint32_t>(m.ranges.size()));
  for (const auto& k : m.ranges) {
    w.write(k.region_id);
    w.write(k.offset);
    w.write(k.length);
    w.write(k.address);
    w.write(k.rkey);
    for (uint32_t q : k.queue_rkeys) w.write(q);
  }
  return w.take();
}

Result<MemoryKeys> decode_memory_keys(std::span<const std::byte> body, const RegionTable& table,
                                      uint32_t page_size, uint32_t queue_keys) {
  BodyReader r(body, "memory_keys");
  MemoryKeys m;
  uint32_t count = r.read<uint32_t>("count");
  if (r.ok() && count == 0) r.reject("count", "no key ranges");
  for (uint32_t i = 0; r.ok() && i < count; ++i) {
    KeyRange k;
    k.region_id = r.read<uint32_t>("region_id");
    k.offset = r.read<uint64_t>("offset");
    k.length = r.read<uint64_t>("length");
    k.address = r.read<uint64_t>("address");
    k.rkey = r.read<uint32_t>("rkey");
    for (uint32_t q = 0; r.ok() && q < queue_keys; ++q)
      k.queue_rkeys.push_back(r.read<uint32_t>("queue_rkey"));
    if (!r.ok()) break;
    if (k.region_id >= table.regions.size()) {
      r.reject("region_id",
               fmt::format("range {} names region {} of {}", i, k.region_id, table.regions.size()));
      break;
    }
    const uint64_t bytes = table.regions[k.region_id].bytes;
    const uint64_t span = (bytes + page_size - 1) / page_size * page_size;
    if (k.offset % page_size != 0)
      r.reject("offset",
               fmt::format("{} is not a multiple of the {}-byte page", k.offset, page_size));
    else if (k.length == 0 || k.length % page_size != 0)
      r.reject("length", fmt::format("{} is not a whole number of pages", k.length));
    else if (k.offset >= span || k.length > span - k.offset)
      r.reject("length", fmt::format("range {}+{} ends beyond region {} ({} bytes)", k.offset,
                                     k.length, k.region_id, bytes));
    else if (k.address + k.length < k.address)
      r.reject("address", "range wraps around");
    m.ranges.push_back(k);
  }
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

// ---- device state, compressed ------------------------------------------------------------

std::vector<std::byte> encode(const DeviceStateZstd& m) {
  BodyWriter w;
  w.write(m.raw_bytes);
  w.write_bytes(m.zstd);
  return w.take();
}

Result<DeviceStateZstd> decode_device_state_zstd(std::span<const std::byte> body) {
  BodyReader r(body, "device_state_zstd");
  DeviceStateZstd m;
  m.raw_bytes = r.read<uint64_t>("raw_bytes");
  if (r.ok() && (m.raw_bytes == 0 || m.raw_bytes > kMaxFrameBody))
    r.reject("raw_bytes", fmt::format("{} is outside 1..{}", m.raw_bytes, kMaxFrameBody));
  if (r.ok() && r.remaining() == 0) r.reject("zstd", "no compressed bytes");
  if (r.ok()) m.zstd = r.read_rest();
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

// ---- round end, switchover -------------------------------------------------------------

std::vector<std::byte> encode(const RoundEnd& m) {
  BodyWriter w;
  w.write(m.round);
  w.write(m.queue);
  w.write(m.batches);
  return w.take();
}

Result<RoundEnd> decode_round_end(std::span<const std::byte> body) {
  BodyReader r(body, "round_end");
  RoundEnd m;
  m.round = r.read<uint32_t>("round");
  m.queue = r.read<uint32_t>("queue");
  m.batches = r.read<uint64_t>("batches");
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

std::vector<std::byte> encode(const Switchover& m) {
  BodyWriter w;
  w.write(m.round);
  return w.take();
}

Result<Switchover> decode_switchover(std::span<const std::byte> body) {
  BodyReader r(body, "switchover");
  Switchover m;
  m.round = r.read<uint32_t>("round");
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

// ---- digest ----------------------------------------------------------------------------

std::vector<std::byte> encode(const Digest& m) {
  BodyWriter w;
  w.write(m.final_round);
  w.write(m.chunk_bytes);
  w.write(static_cast<uint32_t>(m.regions.size()));
  for (const auto& region : m.regions) {
    w.write(static_cast<uint64_t>(region.size()));
    for (uint64_t hash : region) w.write(hash);
  }
  return w.take();
}

Result<Digest> decode_digest(std::span<const std::byte> body) {
  BodyReader r(body, "digest");
  Digest m;
  m.final_round = r.read<uint32_t>("final_round");
  m.chunk_bytes = r.read<uint32_t>("chunk_bytes");
  uint32_t count = r.read<uint32_t>("region_count");
  if (r.ok() && (count < 1 || count > kMaxRegions))
    r.reject("region_count", fmt::format("{} is outside 1..{}", count, kMaxRegions));
  for (uint32_t i = 0; r.ok() && i < count; ++i) {
    uint64_t chunks = r.read<uint64_t>("chunk_count");
    if (r.ok() && chunks > r.remaining() / 8) {
      r.reject("chunk_count",
               fmt::format("{} chunks but only {} bytes left", chunks, r.remaining()));
      break;
    }
    std::vector<uint64_t> hashes(chunks);
    for (auto& h : hashes) h = r.read<uint64_t>("hash");
    m.regions.push_back(std::move(hashes));
  }
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

// ---- error -----------------------------------------------------------------------------

std::vector<std::byte> encode(const ErrorMessage& m) {
  BodyWriter w;
  w.write(static_cast<uint32_t>(m.code));
  w.write_string(m.message.substr(0, kMaxErrorMessageBytes));
  return w.take();
}

Result<ErrorMessage> decode_error(std::span<const std::byte> body) {
  BodyReader r(body, "error");
  ErrorMessage m;
  uint32_t code = r.read<uint32_t>("code");
  m.message = r.read_string("message", kMaxErrorMessageBytes);
  if (r.ok() && (code == 0 || code > static_cast<uint32_t>(ErrorCode::kInternal)))
    r.reject("code", fmt::format("{} is unknown", code));
  m.code = static_cast<ErrorCode>(code);
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

Status expect_empty(FrameType type, std::span<const std::byte> body) {
  if (!body.empty())
    return Status(ErrorCode::kProtocol, fmt::format("{}: expected no body, got {} bytes",
                                                    frame_type_name(type), body.size()));
  return Status::ok();
}

}  // namespace ramshift::wire
