// Re-encodes whole multifd packets with the page pipeline (source) and rebuilds them byte
// for byte (destination). One pair per channel: the XBZRLE caches stay in step because a
// channel's packets travel in order on one queue and both ends see the same headers.
//
// Body of a PAGES message: u32 header_len (LE), the packet header verbatim (fixed part and
// offsets), then one page batch whose page i is the packet's i-th normal page. Cache keys
// come from the header on both ends: (ramblock, offset / page size), ramblocks numbered in
// order of first appearance on the channel.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/pipeline/batch_decoder.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/pipeline/compression_governor.h"
#include "ramshift/qemu/multifd.h"

namespace ramshift::qemu {

// Cache keys of a packet's normal pages.
class RamblockKeys {
 public:
  void fill(const MultifdPacket& k, std::span<const std::byte> header, std::vector<uint64_t>& out);

 private:
  std::map<std::string, uint32_t, std::less<>> ids_;
};

class PacketEncoder {
 public:
  PacketEncoder(const pipeline::CodecConfig& codec, pipeline::CompressionGovernor* governor,
                size_t cache_bytes);
  // Encodes `packet` (header and payload: k.total_bytes() bytes). The result is a gather
  // list valid until the next call.
  // With `place`, raw pages are left out of the batch as kPlaced entries and listed by
  // placements() (first_page = page index within the packet): the caller writes each run to
  // header_bytes + first_page * page_size of the destination's slot before sending the body.
  // `packet` must then stay unchanged until those writes are done.
  std::span<const std::span<const std::byte>> encode(const MultifdPacket& k,
                                                     std::span<const std::byte> packet,
                                                     bool place = false);
  std::span<const pipeline::Placement> placements() const;
  const pipeline::PageCounts& counts() const { return counts_; }

 private:
  pipeline::CodecConfig codec_;
  pipeline::CompressionGovernor* governor_;
  size_t cache_bytes_;
  size_t page_size_ = 0;
  std::unique_ptr<pipeline::BatchEncoder> encoder_;  // once the page size is known
  // Whether the page behind `key` was sent before on this channel (and marks it sent).
  bool sent_before(uint64_t key);

  RamblockKeys keys_;
  std::vector<uint64_t> key_buf_;
  // Pages sent so far, a bitmap per ramblock: XBZRLE caches a page only from its second
  // sending on, like QEMU, so the first pass over RAM costs no cache copies on either side.
  std::vector<std::vector<uint64_t>> sent_;
  std::byte prefix_[4];
  std::vector<std::span<const std::byte>> segments_;
  pipeline::PageCounts counts_;
};

class PacketDecoder {
 public:
  explicit PacketDecoder(size_t cache_bytes) : cache_bytes_(cache_bytes) {}
  // Validates a PAGES body and returns the rebuilt packet (valid until the next call).
  // kProtocol/kCorrupt naming the fault for anything that does not add up.
  Result<std::span<const std::byte>> decode(std::span<const std::byte> body);
  // The same for a PLACED body: the packet is rebuilt in `slot`, whose kPlaced pages the
  // peer already wrote at their final offsets; returns the packet's span of `slot`.
  Result<std::span<const std::byte>> decode_in_place(std::span<const std::byte> body,
                                                     std::span<std::byte> slot);
  const pipeline::PageCounts& counts() const { return counts_; }

 private:
  // `slot` empty: rebuild in packet_.
  Result<std::span<const std::byte>> rebuild(std::span<const std::byte> body,
                                             std::span<std::byte> slot);
  pipeline::PageCounts counts_;
  size_t cache_bytes_;
  size_t page_size_ = 0;
  std::unique_ptr<pipeline::BatchDecoder> decoder_;
  RamblockKeys keys_;
  std::vector<uint64_t> key_buf_;
  std::vector<std::byte> packet_;
};

}  // namespace ramshift::qemu
