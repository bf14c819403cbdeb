// Backend settings as the user wrote them: name -> text, e.g. "rdma-sq-depth" -> "64".
//
// The core carries them without knowing what they mean; each backend reads and validates the
// names it owns (those that start with its scheme and a dash) when it listens or connects,
// and through check_settings() (registry.h) when a command resolves its flags. A name is the
// long CLI flag without its dashes, so an error can name the flag and a saved profile
// (`ramshift tune --profile`) reads as the command line it stands for.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ramshift/base/status.h"

namespace ramshift::transport {

class BackendSettings {
 public:
  void set(std::string name, std::string value) { values_[std::move(name)] = std::move(value); }
  void set_number(std::string name, uint64_t value) { set(std::move(name), std::to_string(value)); }
  void set_flag(std::string name, bool value) { set(std::move(name), value ? "true" : "false"); }

  // The text given for `name`, if any.
  std::optional<std::string_view> find(std::string_view name) const;
  // `name` as a whole decimal number, or `fallback` when absent; kInvalidArgument
  // ("--NAME ...") when the text is not one.
  Result<uint64_t> number(std::string_view name, uint64_t fallback) const;
  // `name` as true/false (also 1/0, on/off), or `fallback` when absent.
  Result<bool> flag(std::string_view name, bool fallback) const;

  bool empty() const { return values_.empty(); }
  const std::map<std::string, std::string, std::less<>>& values() const { return values_; }
  bool operator==(const BackendSettings&) const = default;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

}  // namespace ramshift::transport
