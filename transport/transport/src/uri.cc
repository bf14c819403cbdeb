#include "ramshift/transport/uri.h"

#include <fmt/format.h>

#include <charconv>

#include "ramshift/transport/registry.h"

namespace ramshift::transport {

namespace {
// How `scheme` names a peer; a scheme no backend registers is written as HOST:PORT.
AddressForm address_form(std::string_view scheme) {
  const Backend* b = backends().find(scheme);
  return b ? b->address_form : AddressForm::kHostPort;
}
}  // namespace

std::string Uri::to_string() const {
  if (address_form(scheme) == AddressForm::kName) return scheme + "://" + host;
  if (host.find(':') != std::string::npos) return fmt::format("{}://[{}]:{}", scheme, host, port);
  return fmt::format("{}://{}:{}", scheme, host, port);
}

Result<Uri> parse_uri(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("malformed URI '{}': {} (expected e.g. tcp://127.0.0.1:7000, "
                              "rdma://10.0.0.2:7000 or loopback://name)",
                              text, why));
  };
  Uri uri;
  if (text == "loopback") {
    uri.scheme = "loopback";
    uri.host = "default";
    return uri;
  }
  size_t sep = text.find("://");
  size_t skip = 3;
  if (sep == std::string_view::npos) {
    // QEMU's own form, `tcp:HOST:PORT` / `rdma:HOST:PORT`, is what its users type: accept it
    // for every scheme whose address is host:port.
    sep = text.find(':');
    skip = 1;
    const Backend* b =
        sep == std::string_view::npos ? nullptr : backends().find(std::string(text.substr(0, sep)));
    if (!b || b->address_form == AddressForm::kName) return bad("no scheme");
  }
  if (sep == 0) return bad("no scheme");
  uri.scheme = std::string(text.substr(0, sep));
  std::string_view rest = text.substr(sep + skip);
  // Known schemes are those in the registry, empty slots included: `dpdk://h:1` parses, and
  // listen/connect then say why this binary cannot serve it.
  const Backend* backend = backends().find(uri.scheme);
  if (!backend) return bad(fmt::format("unknown scheme '{}'", uri.scheme));
  if (backend->address_form == AddressForm::kName) {
    if (rest.empty()) return bad(fmt::format("{} needs a name", uri.scheme));
    uri.host = std::string(rest);
    return uri;
  }
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    host = rest.substr(1, close - 1);
    if (close + 1 >= rest.size() || rest[close + 1] != ':') return bad("no port");
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("IPv6 addresses need [brackets]");
  }
  if (host.empty()) return bad("empty host");
  if (host.find('/') != std::string_view::npos) return bad("host contains '/'");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535)
    return bad(fmt::format("port '{}' is not a number in 0..65535", port));
  uri.host = std::string(host);
  uri.port = static_cast<uint16_t>(value);
  return uri;
}

}  // namespace ramshift::transport
