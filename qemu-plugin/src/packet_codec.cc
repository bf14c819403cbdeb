#include "packet_codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "ramshift/base/byte_order.h"
#include "ramshift/pipeline/page_cache.h"

namespace ramshift::qemu {

void RamblockKeys::fill(const MultifdPacket& k, std::span<const std::byte> header,
                        std::vector<uint64_t>& out) {
  auto it = ids_.find(k.ramblock);
  if (it == ids_.end()) it = ids_.emplace(std::string(k.ramblock), ids_.size()).first;
  out.resize(k.normal_pages);
  for (uint32_t i = 0; i < k.normal_pages; ++i)
    out[i] =
        pipeline::PageCache::make_key(it->second, MultifdPacket::offset(header, i) / k.page_size);
}

PacketEncoder::PacketEncoder(const pipeline::CodecConfig& codec,
                             pipeline::CompressionGovernor* governor, size_t cache_bytes)
    : codec_(codec), governor_(governor), cache_bytes_(cache_bytes) {}

std::span<const pipeline::Placement> PacketEncoder::placements() const {
  return encoder_ ? encoder_->placements() : std::span<const pipeline::Placement>();
}

std::span<const std::span<const std::byte>> PacketEncoder::encode(const MultifdPacket& k,
                                                                  std::span<const std::byte> packet,
                                                                  bool place) {
  segments_.clear();
  store_le<uint32_t>(prefix_, static_cast<uint32_t>(k.header_bytes));
  segments_.push_back({prefix_, 4});
  auto header = packet.first(k.header_bytes);
  segments_.push_back(header);
  if (k.normal_pages > 0 && !encoder_) {
    page_size_ = k.page_size;
    encoder_ = std::make_unique<pipeline::BatchEncoder>(codec_, page_size_,
                                                        pipeline::kMaxBatchPages, cache_bytes_);
  }
  if (k.normal_pages == 0) return segments_;  // a SYNC or empty packet: header only
  keys_.fill(k, header, key_buf_);
  pipeline::BatchPolicy policy;
  policy.compress = governor_ && governor_->should_compress();
  policy.cache_insert = pipeline::codec_uses_xbzrle(codec_.mode);
  policy.place_raw = place;
  policy.stable_pages = true;  // the bridge's own copy of the packet
  encoder_->begin(0, 0, policy);
  const std::byte* pages = packet.data() + k.header_bytes;
  for (uint32_t i = 0; i < k.normal_pages; ++i)
    encoder_->add(i, pages + size_t{i} * page_size_, key_buf_[i], sent_before(key_buf_[i]));
  pipeline::BatchView view = encoder_->finish();
  counts_ += encoder_->counts();
  if (governor_) governor_->record(k.payload_bytes);
  for (auto s : view.segments) segments_.push_back(s);
  return segments_;
}

namespace {
constexpr uint64_t kMaxTrackedPages = uint64_t{1} << 32;
}  // namespace

bool PacketEncoder::sent_before(uint64_t key) {
  const uint64_t block = pipeline::PageCache::key_region(key);
  const uint64_t page = pipeline::PageCache::key_page(key);
  if (block >= sent_.size()) sent_.resize(block + 1);
  auto& bits = sent_[block];
  // A page number no real ramblock reaches (16 TiB of 4 KiB pages) is not tracked: a bad
  // offset must not make the bitmap allocate terabytes. Such a page is never cached.
  if (page >= kMaxTrackedPages) return false;
  const uint64_t word = page / 64, bit = uint64_t{1} << (page % 64);
  if (word >= bits.size()) bits.resize(std::max<size_t>(word + 1, bits.size() * 2), 0);
  const bool was = bits[word] & bit;
  bits[word] |= bit;
  return was;
}

Result<std::span<const std::byte>> PacketDecoder::decode(std::span<const std::byte> body) {
  return rebuild(body, {});
}

Result<std::span<const std::byte>> PacketDecoder::decode_in_place(std::span<const std::byte> body,
                                                                  std::span<std::byte> slot) {
  if (slot.empty()) return Status(ErrorCode::kInvalidArgument, "decode_in_place without a slot");
  return rebuild(body, slot);
}

Result<std::span<const std::byte>> PacketDecoder::rebuild(std::span<const std::byte> body,
                                                          std::span<std::byte> slot) {
  auto bad = [](const std::string& what) {
    return Status(ErrorCode::kProtocol, "multifd PAGES message: " + what);
  };
  if (body.size() < 4) return bad("shorter than its header length");
  size_t header_len = load_le<uint32_t>(body.data());
  if (header_len > body.size() - 4)
    return bad(fmt::format("header_len {} beyond the {}-byte body", header_len, body.size()));
  auto header = body.subspan(4, header_len);
  ParseResult r = parse_multifd_packet(header, page_size_);
  if (r.outcome != ParseOutcome::kPacket)
    return bad(r.outcome == ParseOutcome::kDoubt ? "packet header: " + r.doubt
                                                 : "packet header cut short");
  const MultifdPacket& k = r.packet;
  if (k.header_bytes != header_len)
    return bad(fmt::format("header_len {} but the header says {}", header_len, k.header_bytes));
  auto batch = body.subspan(4 + header_len);
  std::span<std::byte> out;
  if (slot.empty()) {
    packet_.resize(k.total_bytes());
    out = packet_;
  } else {
    if (k.total_bytes() > slot.size())
      return bad(
          fmt::format("a {}-byte packet placed in a {}-byte slot", k.total_bytes(), slot.size()));
    out = slot.first(k.total_bytes());
  }
  std::memcpy(out.data(), header.data(), header_len);
  if (k.normal_pages == 0) {
    if (!batch.empty()) return bad("page batch after a packet without pages");
    return std::span<const std::byte>(out.data(), header_len);
  }
  if (!decoder_) {
    page_size_ = k.page_size;
    decoder_ = std::make_unique<pipeline::BatchDecoder>(page_size_, pipeline::kMaxBatchPages,
                                                        cache_bytes_);
  }
  keys_.fill(k, header, key_buf_);
  std::span<std::byte> payload(out.data() + header_len, k.payload_bytes);
  std::span<std::byte> regions[] = {payload};
  // kPlaced entries are only believed where the peer could have written: in a slot.
  decoder_->allow_placed(!slot.empty());
  RS_ASSIGN_OR_RETURN(pipeline::DecodedBatch d, decoder_->apply(batch, regions, nullptr, key_buf_));
  // A batch short of pages would leave bytes of an earlier packet in place; a page sent
  // twice in place of another is caught by the channel's CLOSE CRC.
  if (d.counts.total() != k.normal_pages)
    return bad(fmt::format("batch carries {} pages for {} in the packet", d.counts.total(),
                           k.normal_pages));
  counts_ += d.counts;
  return std::span<const std::byte>(out);
}

}  // namespace ramshift::qemu
