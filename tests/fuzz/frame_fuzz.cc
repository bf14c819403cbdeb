// Fuzzes the frame parser and every control-message decoder. The input is used twice: as a
// raw message (header checks, CRC) and, with a correct header and CRC built around it, as a
// body of the type named by its first byte (so the decoders see deep inputs, not CRC fails).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ramshift/wire/frame.h"

using namespace ramshift::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> raw(reinterpret_cast<const std::byte*>(data), size);
  (void)parse_frame(raw);
  if (size == 0) return 0;
  auto type = static_cast<FrameType>(1 + data[0] % static_cast<uint8_t>(kLastFrameType));
  auto body = raw.subspan(1);
  auto header = frame_header(type, body);
  std::vector<std::byte> msg(header.begin(), header.end());
  msg.insert(msg.end(), body.begin(), body.end());
  auto f = parse_frame(msg);
  if (!f) __builtin_trap();  // a frame we built ourselves must parse
  switch (f->type) {
    case FrameType::kHello:
      (void)decode_hello(f->body);
      break;
    case FrameType::kRegionTable:
      (void)decode_region_table(f->body);
      break;
    case FrameType::kRoundEnd:
      (void)decode_round_end(f->body);
      break;
    case FrameType::kSwitchover:
      (void)decode_switchover(f->body);
      break;
    case FrameType::kDigest:
      (void)decode_digest(f->body);
      break;
    case FrameType::kError:
      (void)decode_error(f->body);
      break;
    case FrameType::kMemoryKeys: {
      // Against a fixed table: a range that decodes must lie inside it, page-aligned.
      static const RegionTable table{{{0, 64u << 20, "ram"}, {1, 5000, "rom"}}};
      // And as a connection with keys per queue (3 queues) reads it: 3 keys to every range.
      for (uint32_t queue_keys : {0u, 3u}) {
        auto keys = decode_memory_keys(f->body, table, 4096, queue_keys);
        if (keys)
          for (const auto& k : keys->ranges)
            if (k.region_id > 1 || k.offset % 4096 || k.length == 0 ||
                k.offset + k.length > (k.region_id == 0 ? (64u << 20) : 8192u) ||
                k.queue_rkeys.size() != queue_keys)
              __builtin_trap();
      }
      break;
    }
    // Post-copy: whatever decodes names only pages of the table (64 MiB: 16384 pages; 2).
    case FrameType::kPostcopyStart: {
      static const RegionTable table{{{0, 64u << 20, "ram"}, {1, 5000, "rom"}}};
      auto start = decode_postcopy_start(f->body, table, 4096);
      if (start && (start->pages.size() != 2 || start->pages[0].size() != 2048 ||
                    start->pages[1].size() != 1))
        __builtin_trap();
      break;
    }
    case FrameType::kPageRequest: {
      static const RegionTable table{{{0, 64u << 20, "ram"}, {1, 5000, "rom"}}};
      auto request = decode_page_request(f->body, table, 4096);
      if (request)
        for (const auto& p : request->pages)
          if (p.region_id > 1 || p.page >= (p.region_id == 0 ? 16384u : 2u)) __builtin_trap();
      break;
    }
    case FrameType::kPostcopyPages: {
      static const RegionTable table{{{0, 64u << 20, "ram"}, {1, 5000, "rom"}}};
      auto run = decode_postcopy_pages(f->body, table, 4096);
      if (run && (run->run.region_id > 1 ||
                  run->run.first + run->run.count > (run->run.region_id == 0 ? 16384u : 2u) ||
                  run->kinds.size() != run->run.count || run->data.size() % 4096))
        __builtin_trap();
      break;
    }
    default:
      (void)expect_empty(f->type, f->body);
      break;
  }
  return 0;
}
