// The post-copy frames (docs/protocol.md "Post-copy"):
//   POSTCOPY_START  u32 rounds, u32 region_count, then per region u64 pages and
//                   ceil(pages / 8) bitmap bytes
//   PAGE_REQUEST    u32 count, then count x {u32 region, u64 page}
//   POSTCOPY_PAGES  u32 region, u64 first, u32 count, count kind bytes, the raw pages
#include <fmt/format.h>

#include "ramshift/wire/codec_io.h"
#include "ramshift/wire/frame.h"

namespace ramshift::wire {

std::vector<std::byte> encode(const PostcopyStart& m) {
  BodyWriter w;
  w.write(m.rounds);
  w.write(static_cast<uint32_t>(m.pages.size()));
  for (const auto& bits : m.pages) {
    // The page count travels, not only the bitmap's bytes, so the shape is checked exactly.
    w.write(static_cast<uint64_t>(bits.size()) * 8);
    w.write_bytes(std::as_bytes(std::span(bits)));
  }
  return w.take();
}

Result<PostcopyStart> decode_postcopy_start(std::span<const std::byte> body,
                                            const RegionTable& table, uint32_t page_size) {
  BodyReader r(body, "postcopy_start");
  PostcopyStart m;
  m.rounds = r.read<uint32_t>("rounds");
  const uint32_t regions = r.read<uint32_t>("region_count");
  if (r.ok() && regions != table.regions.size())
    r.reject("region_count",
             fmt::format("{} regions; the table has {}", regions, table.regions.size()));
  for (uint32_t i = 0; r.ok() && i < regions; ++i) {
    const uint64_t bits = r.read<uint64_t>("pages");
    const uint64_t want = (region_pages(table.regions[i].bytes, page_size) + 7) / 8 * 8;
    if (r.ok() && bits != want) {
      r.reject("pages", fmt::format("region {}: a bitmap of {} pages; it has {} (rounded to 8)", i,
                                    bits, want));
      break;
    }
    if (r.ok() && r.remaining() < bits / 8) {
      r.reject("bitmap", fmt::format("region {}: {} bytes left of {}", i, r.remaining(), bits / 8));
      break;
    }
    std::vector<uint8_t> map(bits / 8);
    for (auto& b : map) b = r.read<uint8_t>("bitmap");
    m.pages.push_back(std::move(map));
  }
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

std::vector<std::byte> encode(const PageRequest& m) {
  BodyWriter w;
  w.write(static_cast<uint32_t>(m.pages.size()));
  for (const auto& p : m.pages) {
    w.write(p.region_id);
    w.write(p.page);
  }
  return w.take();
}

namespace {
// A page the table has, or the reason it is not.
bool check_page(BodyReader& r, const RegionTable& table, uint32_t page_size, uint32_t region,
                uint64_t page, uint64_t count) {
  if (!r.ok()) return false;
  if (region >= table.regions.size()) {
    r.reject("region_id", fmt::format("{} is not a region of this guest", region));
    return false;
  }
  const uint64_t pages = region_pages(table.regions[region].bytes, page_size);
  if (page >= pages || count > pages - page) {
    r.reject("page", fmt::format("pages {}..{} are past region {}'s {} pages", page,
                                 page + count - 1, region, pages));
    return false;
  }
  return true;
}
}  // namespace

Result<PageRequest> decode_page_request(std::span<const std::byte> body, const RegionTable& table,
                                        uint32_t page_size) {
  BodyReader r(body, "page_request");
  PageRequest m;
  const uint32_t count = r.read<uint32_t>("count");
  if (r.ok() && (count < 1 || count > kMaxRequestPages || count > r.remaining() / 12))
    r.reject("count",
             fmt::format("{} pages in {} bytes (1..{})", count, r.remaining(), kMaxRequestPages));
  for (uint32_t i = 0; r.ok() && i < count; ++i) {
    PageRef p;
    p.region_id = r.read<uint32_t>("region_id");
    p.page = r.read<uint64_t>("page");
    if (check_page(r, table, page_size, p.region_id, p.page, 1)) m.pages.push_back(p);
  }
  RS_RETURN_IF_ERROR(r.finish());
  return m;
}

std::vector<std::byte> encode_postcopy_pages_head(const PostcopyPagesHeader& run,
                                                  std::span<const uint8_t> kinds) {
  BodyWriter w;
  w.write(run.region_id);
  w.write(run.first);
  w.write(run.count);
  w.write_bytes(std::as_bytes(kinds));
  return w.take();
}

Result<PostcopyPages> decode_postcopy_pages(std::span<const std::byte> body,
                                            const RegionTable& table, uint32_t page_size) {
  BodyReader r(body, "postcopy_pages");
  PostcopyPages m;
  m.run.region_id = r.read<uint32_t>("region_id");
  m.run.first = r.read<uint64_t>("first");
  m.run.count = r.read<uint32_t>("count");
  if (r.ok() && (m.run.count < 1 || m.run.count > kMaxPostcopyRun))
    r.reject("count", fmt::format("{} pages in a run (1..{})", m.run.count, kMaxPostcopyRun));
  check_page(r, table, page_size, m.run.region_id, m.run.first, m.run.count);
  if (!r.ok()) {
    RS_RETURN_IF_ERROR(r.finish());
  }
  if (r.remaining() < m.run.count) {
    r.reject("kinds", fmt::format("{} bytes left for {} kinds", r.remaining(), m.run.count));
    RS_RETURN_IF_ERROR(r.finish());
  }
  auto rest = r.read_rest();
  m.kinds = {reinterpret_cast<const uint8_t*>(rest.data()), m.run.count};
  uint64_t raw = 0;
  for (uint8_t k : m.kinds) {
    if (k != kPageKindZero && k != kPageKindRaw)
      return Status(ErrorCode::kProtocol,
                    fmt::format("postcopy_pages: kind {} is neither zero (0) nor raw (1)", k));
    raw += k == kPageKindRaw;
  }
  m.data = rest.subspan(m.run.count);
  if (m.data.size() != raw * page_size)
    return Status(ErrorCode::kProtocol,
                  fmt::format("postcopy_pages: {} bytes of pages for {} raw pages of {} bytes",
                              m.data.size(), raw, page_size));
  return m;
}

}  // namespace ramshift::wire
