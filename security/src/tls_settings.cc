#include "ramshift/security/tls_settings.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace ramshift::security {
namespace {

// Why 16 bytes: QEMU's documentation generates 32-byte keys; below 128 bits a key could be
// searched offline from one recorded handshake.
constexpr size_t kMinPskBytes = 16;

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> read_text(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in)
    return Status(ErrorCode::kNotFound,
                  fmt::format("{} {}: cannot read the file (missing or not readable)", flag, path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Result<TlsSettings> TlsSettings::from(const transport::BackendSettings& settings) {
  TlsSettings t;
  if (auto v = settings.find("tls-dir")) t.dir = std::string(*v);
  if (auto v = settings.find("tls-psk")) t.psk_file = std::string(*v);
  if (auto v = settings.find("tls-authz")) t.authz = std::string(*v);
  RS_ASSIGN_OR_RETURN(t.ktls, settings.flag("tls-ktls", true));
  if (!t.dir.empty() && !t.psk_file.empty())
    return Status(ErrorCode::kInvalidArgument,
                  "--tls-dir and --tls-psk exclude each other: certificates or a pre-shared key");
  if (t.dir.empty() && t.psk_file.empty())
    return Status(ErrorCode::kInvalidArgument, "--tls-dir DIR or --tls-psk FILE must not be empty");
  while (t.dir.size() > 1 && t.dir.back() == '/') t.dir.pop_back();
  return t;
}

Result<std::vector<PskEntry>> parse_psk(const std::string& text, const std::string& path) {
  std::vector<PskEntry> out;
  std::istringstream in(text);
  std::string raw;
  for (int line = 1; std::getline(in, raw); ++line) {
    std::string l = trim(raw);
    if (l.empty() || l[0] == '#') continue;
    auto colon = l.find(':');
    auto bad = [&](const std::string& why) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("--tls-psk {} line {}: {} (expected identity:hexkey, as QEMU's "
                                "keys.psk; make a key with `openssl rand -hex 32`)",
                                path, line, why));
    };
    if (colon == std::string::npos || colon == 0) return bad("no identity before ':'");
    PskEntry e;
    e.identity = l.substr(0, colon);
    std::string hex = l.substr(colon + 1);
    if (hex.size() % 2 != 0) return bad("the key has an odd number of hex digits");
    for (size_t i = 0; i < hex.size(); i += 2) {
      int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
      if (hi < 0 || lo < 0) return bad("the key is not hexadecimal");
      e.key.push_back(static_cast<uint8_t>(hi * 16 + lo));
    }
    if (e.key.size() < kMinPskBytes)
      return bad(
          fmt::format("the key has {} bytes; at least {} are needed", e.key.size(), kMinPskBytes));
    out.push_back(std::move(e));
  }
  if (out.empty())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--tls-psk {}: no identity:hexkey line in the file", path));
  return out;
}

Result<std::vector<PskEntry>> load_psk(const std::string& path) {
  RS_ASSIGN_OR_RETURN(std::string text, read_text(path, "--tls-psk"));
  return parse_psk(text, path);
}

Result<std::vector<std::string>> load_authz(const std::string& authz) {
  std::vector<std::string> out;
  if (authz.empty()) return out;
  std::string text = authz;
  char sep = ';';
  // A value that names a file is the file's lines; anything else is the list itself.
  if (std::ifstream probe(authz); probe.good() && authz.find('=') == std::string::npos) {
    RS_ASSIGN_OR_RETURN(text, read_text(authz, "--tls-authz"));
    sep = '\n';
  } else if (authz.find('=') == std::string::npos && authz.find('/') != std::string::npos) {
    return Status(
        ErrorCode::kNotFound,
        fmt::format("--tls-authz {}: cannot read the file (missing or not readable)", authz));
  }
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, sep)) {
    std::string t = trim(item);
    if (!t.empty() && t[0] != '#') out.push_back(t);
  }
  if (out.empty())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--tls-authz {}: names no identity; leave it out to accept every "
                              "authenticated peer",
                              authz));
  return out;
}

}  // namespace ramshift::security
