// Direct-mapped page cache for XBZRLE: the "old version" a delta is taken against.
//
// Sender and receiver each own one per queue and apply the same operations in the same
// order (the queue is ordered and a page always travels on the same queue), so both caches
// hold identical contents. A key packs region id and page index (make_key). Capacity is a
// power of two of slots; a slot holds one page and the key it belongs to. Not thread-safe:
// one cache per queue thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ramshift::pipeline {

class PageCache {
 public:
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};

  static uint64_t make_key(uint32_t region_id, uint64_t page_index) {
    return (uint64_t{region_id} << 44) | (page_index & ((uint64_t{1} << 44) - 1));
  }
  static uint32_t key_region(uint64_t key) { return static_cast<uint32_t>(key >> 44); }
  static uint64_t key_page(uint64_t key) { return key & ((uint64_t{1} << 44) - 1); }

  // Rounds `capacity_bytes / page_size` down to a power of two slots (0 disables the cache).
  PageCache(size_t capacity_bytes, size_t page_size);

  size_t slots() const { return keys_.size(); }
  bool enabled() const { return !keys_.empty(); }

  // The cached old version of `key`, or nullptr when the slot holds another page.
  std::byte* find(uint64_t key) {
    if (keys_.empty()) return nullptr;
    size_t s = slot_of(key);
    return keys_[s] == key ? data_.get() + s * page_size_ : nullptr;
  }
  // Stores `page` as the current version of `key`, evicting whatever shared its slot.
  void insert(uint64_t key, const std::byte* page);
  // The slot's storage for `key`, claimed for it (contents are whatever was there).
  std::byte* claim(uint64_t key);
  // Which key the slot for `key` currently holds (kEmptyKey if none); for error messages.
  uint64_t resident_for(uint64_t key) const {
    return keys_.empty() ? kEmptyKey : keys_[slot_of(key)];
  }

 private:
  size_t slot_of(uint64_t key) const {
    // Fibonacci hashing spreads the strided page indices a queue sees over all slots.
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_) & (keys_.size() - 1);
  }

  size_t page_size_;
  unsigned shift_ = 64;
  std::vector<uint64_t> keys_;
  std::unique_ptr<std::byte[]> data_;
};

}  // namespace ramshift::pipeline
