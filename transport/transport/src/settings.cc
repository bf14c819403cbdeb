#include "ramshift/transport/settings.h"

#include <fmt/format.h>

#include <charconv>

namespace ramshift::transport {

std::optional<std::string_view> BackendSettings::find(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return std::string_view(it->second);
}

Result<uint64_t> BackendSettings::number(std::string_view name, uint64_t fallback) const {
  auto text = find(name);
  if (!text) return fallback;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (text->empty() || ec != std::errc() || end != text->data() + text->size())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--{} {} is not a whole number", name, *text));
  return value;
}

Result<bool> BackendSettings::flag(std::string_view name, bool fallback) const {
  auto text = find(name);
  if (!text) return fallback;
  if (*text == "true" || *text == "1" || *text == "on") return true;
  if (*text == "false" || *text == "0" || *text == "off") return false;
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("--{} {} is not true or false", name, *text));
}

}  // namespace ramshift::transport
