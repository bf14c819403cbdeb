// The source's guest as a C caller describes it: its own memory regions and the callbacks of
// struct ramshift_source_callbacks, behind the engine's SourceGuest interface.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ramshift/guest/guest.h"
#include "ramshift/ramshift.h"

namespace ramshift::capi {

class CallbackGuest final : public guest::SourceGuest {
 public:
  CallbackGuest(std::vector<guest::Region> regions, const ramshift_source_callbacks& callbacks,
                uint32_t page_size)
      : regions_(std::move(regions)), cb_(callbacks), page_size_(page_size) {}

  const std::vector<guest::Region>& regions() const override { return regions_; }
  std::string describe() const override;
  Status start_dirty_log() override;
  // The bitmap from get_dirty_log, as ascending page indices (none without the callback).
  Result<std::vector<uint64_t>> fetch_dirty(uint32_t region) override;
  void pause() override;
  void resume() override;
  Result<std::string> device_state() const override;

  // A callback returned an error during the run (RAMSHIFT_E_CALLBACK rather than the code
  // the engine gave the failure).
  bool callback_failed() const { return callback_failed_.load(); }

 private:
  Status callback_error(const char* name, int rc) const;

  std::vector<guest::Region> regions_;
  ramshift_source_callbacks cb_;
  uint32_t page_size_;
  mutable std::atomic<bool> callback_failed_{false};
};

}  // namespace ramshift::capi
