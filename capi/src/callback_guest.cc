#include "callback_guest.h"

#include <fmt/format.h>

#include <bit>

#include "ramshift/base/units.h"

namespace ramshift::capi {

std::string CallbackGuest::describe() const {
  uint64_t bytes = 0;
  for (const auto& r : regions_) bytes += r.bytes;
  return fmt::format("embedded guest: {} region(s), {}", regions_.size(), format_bytes(bytes));
}

Status CallbackGuest::callback_error(const char* name, int rc) const {
  callback_failed_ = true;
  return Status(ErrorCode::kInternal,
                fmt::format("the VMM's {} callback failed (returned {})", name, rc));
}

Status CallbackGuest::start_dirty_log() {
  if (!cb_.start_dirty_log) return Status::ok();
  const int rc = cb_.start_dirty_log(cb_.opaque);
  return rc == 0 ? Status::ok() : callback_error("start_dirty_log", rc);
}

Result<std::vector<uint64_t>> CallbackGuest::fetch_dirty(uint32_t region) {
  std::vector<uint64_t> pages;
  if (!cb_.get_dirty_log) return pages;
  const uint64_t count = regions_[region].memory.size() / page_size_;
  std::vector<uint64_t> bitmap((count + 63) / 64, 0);
  const int rc = cb_.get_dirty_log(cb_.opaque, region, bitmap.data(), count);
  if (rc != 0) return callback_error("get_dirty_log", rc);
  for (uint64_t w = 0; w < bitmap.size(); ++w) {
    for (uint64_t bits = bitmap[w]; bits != 0; bits &= bits - 1) {
      const uint64_t page = w * 64 + static_cast<uint64_t>(std::countr_zero(bits));
      if (page < count) pages.push_back(page);  // bits past the region are ignored
    }
  }
  return pages;
}

void CallbackGuest::pause() {
  if (cb_.pause) cb_.pause(cb_.opaque);
}

void CallbackGuest::resume() {
  if (cb_.resume) cb_.resume(cb_.opaque);
}

Result<std::string> CallbackGuest::device_state() const {
  if (!cb_.save_device_state) return std::string();
  const void* data = nullptr;
  size_t size = 0;
  const int rc = cb_.save_device_state(cb_.opaque, &data, &size);
  if (rc != 0) return callback_error("save_device_state", rc);
  if (size > 0 && data == nullptr) return callback_error("save_device_state (a null buffer)", rc);
  return std::string(static_cast<const char*>(data), size);
}

}  // namespace ramshift::capi
