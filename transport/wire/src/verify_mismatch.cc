// VERIFY_MISMATCH (docs/protocol.md): u32 attempt, u32 count, then count x {u32 region,
// u64 chunk}.
#include <fmt/format.h>

#include "ramshift/wire/codec_io.h"
#include "ramshift/wire/frame.h"

namespace ramshift::wire {

std::vector<std::byte> encode(const VerifyMismatch& m) {
  BodyWriter w;
  w.write(m.attempt);
  w.write(static_cast<uint32_t>(m.chunks.size()));
  for (const auto& c : m.chunks) {
    w.write(c.region_id);
    w.write(c.chunk);
  }
  return w.take();
}

Result<VerifyMismatch> decode_verify_mismatch(std::span<const std::byte> body,
                                              const std::vector<uint64_t>& chunk_counts) {
  BodyReader r(body, "verify_mismatch");
  VerifyMismatch m;
  m.attempt = r.read<uint32_t>("attempt");
  const uint32_t count = r.read<uint32_t>("chunk_count");
  if (r.ok() && (count < 1 || count > r.remaining() / 12))
    r.reject("chunk_count", fmt::format("{} chunks in {} bytes", count, r.remaining()));
  for (uint32_t i = 0; r.ok() && i < count; ++i) {
    ChunkRef c;
    c.region_id = r.read<uint32_t>("region_id");
    c.chunk = r.read<uint64_t>("chunk");
    if (r.ok() && c.region_id >= chunk_counts.size())
      r.reject("region_id", fmt::format("{} is not a region of this guest", c.region_id));
    else if (r.ok() && c.chunk >= chunk_counts[c.region_id])
      r.reject("chunk", fmt::format("{} is past region {}'s {} chunks", c.chunk, c.region_id,
                                    chunk_counts[c.region_id]));
    m.chunks.push_back(c);
  }
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

}  // namespace ramshift::wire
