#include "ramshift/wire/frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "ramshift/base/byte_order.h"

namespace ramshift::wire {
namespace {

std::vector<std::byte> message(FrameType t, const std::vector<std::byte>& body) {
  auto h = frame_header(t, body);
  std::vector<std::byte> m(h.size() + body.size());
  std::copy(h.begin(), h.end(), m.begin());
  std::copy(body.begin(), body.end(), m.begin() + static_cast<std::ptrdiff_t>(h.size()));
  return m;
}

TEST(Frame, RoundTripsEveryControlMessage) {
  Hello h;
  h.data_queues = 8;
  h.codec = 5;
  h.xbzrle_cache_per_queue = 1 << 20;
  h.session_id = 42;
  h.software = "test";
  auto m = message(FrameType::kHello, encode(h));
  auto f = parse_frame(m).value();
  EXPECT_EQ(f.type, FrameType::kHello);
  auto h2 = decode_hello(f.body).value();
  EXPECT_EQ(h2.data_queues, 8u);
  EXPECT_EQ(h2.session_id, 42u);
  EXPECT_EQ(h2.software, "test");

  RegionTable t{{{0, 1 << 20, "ram"}, {1, 4097, "rom"}}};
  auto t2 = decode_region_table(encode(t)).value();
  ASSERT_EQ(t2.regions.size(), 2u);
  EXPECT_EQ(t2.regions[1].bytes, 4097u);
  EXPECT_EQ(t2.regions[1].name, "rom");

  Digest d{3, 1 << 20, {{1, 2, 3}, {4}}};
  auto d2 = decode_digest(encode(d)).value();
  EXPECT_EQ(d2.final_round, 3u);
  EXPECT_EQ(d2.regions[0], (std::vector<uint64_t>{1, 2, 3}));

  auto e = decode_error(encode(ErrorMessage{ErrorCode::kNoSpace, "disk full"})).value();
  EXPECT_EQ(e.code, ErrorCode::kNoSpace);
  EXPECT_EQ(e.message, "disk full");

  auto r = decode_round_end(encode(RoundEnd{2, 5, 77})).value();
  EXPECT_EQ(r.batches, 77u);
}

TEST(Frame, HeaderDamageIsRejectedWithTheReason) {
  auto good = message(FrameType::kRoundEnd, encode(RoundEnd{1, 0, 3}));
  auto check = [&](auto mutate, const char* expect) {
    auto m = good;
    mutate(m);
    auto r = parse_frame(m);
    ASSERT_FALSE(r) << expect;
    EXPECT_NE(r.status().message().find(expect), std::string::npos) << r.status().message();
  };
  check([](auto& m) { m[0] = std::byte{0}; }, "magic");
  check([](auto& m) { m[4] = std::byte{99}; }, "type");
  check([](auto& m) { m[5] = std::byte{1}; }, "reserved");
  check([](auto& m) { store_le<uint32_t>(m.data() + 8, 1000); }, "length");
  check([](auto& m) { store_le<uint32_t>(m.data() + 8, 0xffffffff); }, "limit");
  check([](auto& m) { m.back() ^= std::byte{1}; }, "CRC32C");
  check([](auto& m) { m.resize(7); }, "shorter");
}

TEST(Frame, HelloFieldsAreCheckedByName) {
  auto check = [](auto mutate, const char* field) {
    Hello h;
    mutate(h);
    auto r = decode_hello(encode(h));
    ASSERT_FALSE(r) << field;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  };
  check([](Hello& h) { h.page_size = 3000; }, "page_size");
  check([](Hello& h) { h.page_size = 1 << 20; }, "page_size");
  check([](Hello& h) { h.data_queues = 0; }, "data_queues");
  check([](Hello& h) { h.data_queues = 65; }, "data_queues");
  check([](Hello& h) { h.batch_pages = 5000; }, "batch_pages");
  check(
      [](Hello& h) {
        h.page_size = 65536;
        h.batch_pages = 1024;
      },
      "batch_pages");
  check([](Hello& h) { h.codec = 17; }, "codec");
  check([](Hello& h) { h.xbzrle_cache_per_queue = 1ull << 40; }, "xbzrle_cache_per_queue");
  check(
      [](Hello& h) {
        h.version_min = 3;
        h.version_max = 2;
      },
      "version_min");
}

// A MEMORY_KEYS range must lie inside a region the source announced, on page boundaries:
// a range past the end would let the source write beyond the destination's guest memory.
TEST(Frame, MemoryKeyRangesAreCheckedAgainstTheRegionTable) {
  RegionTable table{{{0, 8 << 20, "ram"}, {1, 100, "rom"}}};  // rom: one partial page
  MemoryKeys keys{{{0, 4 << 20, 4 << 20, 0x10000, 7}, {1, 0, 4096, 0x900000, 9}}};
  auto ok = decode_memory_keys(encode(keys), table, 4096);
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  ASSERT_EQ(ok->ranges.size(), 2u);
  EXPECT_EQ(ok->ranges[0].offset, 4u << 20);
  EXPECT_EQ(ok->ranges[1].rkey, 9u);

  auto bad = [&](MemoryKeys k, const char* field) {
    auto r = decode_memory_keys(encode(k), table, 4096);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  };
  bad(MemoryKeys{}, "count");
  MemoryKeys k = keys;
  k.ranges[0].length = 8 << 20;  // runs 4 MiB past the region's end
  bad(k, "length");
  k = keys;
  k.ranges[1].length = 8192;  // the rom region is one page
  bad(k, "length");
  k = keys;
  k.ranges[0].length = 100;
  bad(k, "length");
  k = keys;
  k.ranges[0].offset = 512;
  bad(k, "offset");
  k = keys;
  k.ranges[1].region_id = 2;
  bad(k, "region_id");
  k = keys;
  k.ranges[0].address = ~uint64_t{0} - 4096;
  bad(k, "address");
}

// Over a connection whose keys travel one per queue (rdma memory windows, each bound to one
// queue pair), each range carries every queue's key: a source that took the ranges without
// them would write through a queue with another queue's key and be refused by the device.
TEST(Frame, MemoryKeysCarryAKeyPerQueueWhereTheConnectionSaysSo) {
  RegionTable table{{{0, 8 << 20, "ram"}}};
  MemoryKeys keys{{{0, 0, 4 << 20, 0x10000, 11, {11, 12, 13}},
                   {0, 4 << 20, 4 << 20, 0x410000, 21, {21, 22, 23}}}};
  auto ok = decode_memory_keys(encode(keys), table, 4096, 3);
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  ASSERT_EQ(ok->ranges.size(), 2u);
  EXPECT_EQ(ok->ranges[1].queue_rkeys, (std::vector<uint32_t>{21, 22, 23}));
  EXPECT_EQ(ok->ranges[1].address, 0x410000u);
  // The count comes from the connection, not the frame: a frame with too few keys per range
  // (another queue count, or none) does not decode.
  EXPECT_FALSE(decode_memory_keys(encode(keys), table, 4096, 4).is_ok());
  MemoryKeys plain = keys;
  for (auto& r : plain.ranges) r.queue_rkeys.clear();
  EXPECT_FALSE(decode_memory_keys(encode(plain), table, 4096, 3).is_ok());
  EXPECT_FALSE(decode_memory_keys(encode(keys), table, 4096).is_ok());
}

TEST(Frame, BodiesMustBeExactlyTheirFields) {
  auto body = encode(RoundEnd{1, 2, 3});
  body.push_back(std::byte{0});
  EXPECT_FALSE(decode_round_end(body));
  body.resize(5);
  EXPECT_FALSE(decode_round_end(body));
  EXPECT_FALSE(decode_region_table(encode(RegionTable{})));                  // no regions
  EXPECT_FALSE(decode_region_table(encode(RegionTable{{{1, 4096, "x"}}})));  // id not 0
  EXPECT_FALSE(decode_region_table(encode(RegionTable{{{0, 0, "x"}}})));     // empty region
  auto digest = encode(Digest{0, 1 << 20, {{1, 2}}});
  store_le<uint64_t>(digest.data() + 12, 1ull << 60);  // chunk count beyond the body
  EXPECT_FALSE(decode_digest(digest));
  EXPECT_FALSE(decode_error(encode(ErrorMessage{static_cast<ErrorCode>(99), "x"})));
  EXPECT_FALSE(expect_empty(FrameType::kReady, body).is_ok());
}

// Post-copy frames: each round-trips, and a page, region or shape outside the region table
// is refused with the field's name (a bad peer never makes the destination touch memory
// outside the guest).
TEST(Frame, PostcopyFramesRoundTripAndAreCheckedAgainstTheTable) {
  RegionTable table{{{0, 10 * 4096, "ram"}, {1, 100, "rom"}}};  // 10 pages, 1 partial page
  PostcopyStart start{3, {{0xff, 0x02}, {0x01}}};
  auto s = decode_postcopy_start(encode(start), table, 4096);
  ASSERT_TRUE(s) << s.status().message();
  EXPECT_EQ(s->rounds, 3u);
  EXPECT_EQ(s->pages, start.pages);
  auto short_map = decode_postcopy_start(encode(PostcopyStart{0, {{0xff}, {0x01}}}), table, 4096);
  ASSERT_FALSE(short_map);
  EXPECT_NE(short_map.status().message().find("postcopy_start.pages"), std::string::npos);
  EXPECT_FALSE(decode_postcopy_start(encode(PostcopyStart{0, {{0xff, 0}}}), table, 4096));

  PageRequest req{{{0, 9}, {1, 0}}};
  auto r = decode_page_request(encode(req), table, 4096);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->pages, req.pages);
  auto past = decode_page_request(encode(PageRequest{{{0, 10}}}), table, 4096);
  ASSERT_FALSE(past);
  EXPECT_NE(past.status().message().find("page_request.page"), std::string::npos);
  EXPECT_FALSE(decode_page_request(encode(PageRequest{{{2, 0}}}), table, 4096));
  EXPECT_FALSE(decode_page_request(encode(PageRequest{}), table, 4096));  // no pages

  const uint8_t kinds[] = {kPageKindRaw, kPageKindZero, kPageKindRaw};
  auto body = encode_postcopy_pages_head({0, 7, 3}, kinds);
  std::vector<std::byte> pages(2 * 4096, std::byte{0x5a});
  body.insert(body.end(), pages.begin(), pages.end());
  auto p = decode_postcopy_pages(body, table, 4096);
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_EQ(p->run.first, 7u);
  EXPECT_EQ(p->run.count, 3u);
  EXPECT_EQ(p->kinds[1], kPageKindZero);
  EXPECT_EQ(p->data.size(), 2u * 4096);
  body.pop_back();  // a raw page one byte short
  EXPECT_FALSE(decode_postcopy_pages(body, table, 4096));
  auto over = encode_postcopy_pages_head({0, 8, 3}, kinds);  // pages 8..10 of 10
  over.resize(over.size() + 2 * 4096);
  auto o = decode_postcopy_pages(over, table, 4096);
  ASSERT_FALSE(o);
  EXPECT_NE(o.status().message().find("postcopy_pages.page"), std::string::npos);
  const uint8_t bad_kind[] = {7};
  EXPECT_FALSE(decode_postcopy_pages(encode_postcopy_pages_head({1, 0, 1}, bad_kind), table, 4096));
  auto parsed = parse_frame([&] {
    auto b = encode(req);
    auto h = frame_header(FrameType::kPageRequest, b);
    std::vector<std::byte> m(h.begin(), h.end());
    m.insert(m.end(), b.begin(), b.end());
    return m;
  }());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->type, FrameType::kPageRequest);
  EXPECT_STREQ(frame_type_name(FrameType::kPostcopyPlaced), "postcopy_placed");
}

}  // namespace
}  // namespace ramshift::wire
