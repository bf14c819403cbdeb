#include "ramshift/migration/cancel.h"

#include <fmt/format.h>

namespace ramshift::migration {

void CancelToken::request(std::string reason) {
  std::lock_guard lock(mu_);
  if (requested_.load(std::memory_order_relaxed)) return;
  reason_ = std::move(reason);
  requested_.store(true, std::memory_order_release);
}

std::string CancelToken::reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

Status CancelToken::status(const char* end) const {
  const std::string why = reason();
  return Status(ErrorCode::kCancelled, why.empty() ? fmt::format("{} cancelled", end)
                                                   : fmt::format("{} cancelled ({})", end, why));
}

}  // namespace ramshift::migration
