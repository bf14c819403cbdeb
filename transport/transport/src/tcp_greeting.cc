#include "tcp_greeting.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "ramshift/base/byte_order.h"

namespace ramshift::transport::tcp {
namespace {

using Clock = std::chrono::steady_clock;

// The first byte of a TLS record carrying a handshake message (a ClientHello).
constexpr std::byte kTlsHandshakeRecord{0x16};

Status stream_write_all(SecureStream& s, int fd, std::span<const std::byte> bytes,
                        Clock::time_point deadline) {
  const std::span<const std::byte> pieces[] = {bytes};
  for (;;) {
    Status w = s.write(pieces);
    if (w) break;
    if (w.code() != ErrorCode::kWouldBlock) return w;
    RS_RETURN_IF_ERROR(wait_fd(fd, POLLOUT, deadline));
  }
  while (s.has_unsent()) {
    Status f = s.flush_some();
    if (!f && f.code() != ErrorCode::kWouldBlock) return f;
    if (s.has_unsent()) RS_RETURN_IF_ERROR(wait_fd(fd, POLLOUT, deadline));
  }
  return Status::ok();
}

Status stream_read_exact(SecureStream& s, int fd, std::span<std::byte> out,
                         Clock::time_point deadline) {
  size_t done = 0;
  while (done < out.size()) {
    auto r = s.read(out.subspan(done));
    if (r && *r == 0) return Status(ErrorCode::kDisconnected, "the peer closed the connection");
    if (r) {
      done += *r;
      continue;
    }
    if (r.status().code() != ErrorCode::kWouldBlock) return r.status();
    RS_RETURN_IF_ERROR(wait_fd(fd, POLLIN, deadline));
  }
  return Status::ok();
}

Result<std::byte> peek_first_byte(int fd, Clock::time_point deadline) {
  for (;;) {
    std::byte b{};
    ssize_t r = ::recv(fd, &b, 1, MSG_PEEK);
    if (r == 1) return b;
    if (r == 0) return Status(ErrorCode::kDisconnected, "closed before saying anything");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno_status(ErrorCode::kDisconnected, "recv", errno);
    RS_RETURN_IF_ERROR(wait_fd(fd, POLLIN, deadline));
  }
}

// Reads and drops what the peer already sent (its hello), so that closing the socket ends it
// with a FIN after our refusal rather than a reset that could discard the refusal unread.
void discard_input(int fd) {
  std::byte sink[4096];
  for (int i = 0; i < 16; ++i)
    if (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0) return;
}

}  // namespace

std::vector<std::byte> encode_refusal(std::string_view reason) {
  reason = reason.substr(0, kMaxRefusalText);
  std::vector<std::byte> out(8 + reason.size());
  store_le<uint32_t>(out.data(), kRefusalMarker);
  store_le<uint32_t>(out.data() + 4, static_cast<uint32_t>(reason.size()));
  std::transform(reason.begin(), reason.end(), out.begin() + 8,
                 [](char c) { return static_cast<std::byte>(c); });
  return out;
}

Status refused_by(const std::string& peer, std::string_view text) {
  std::string clean;
  for (char c : text.substr(0, kMaxRefusalText))
    clean += (c >= 0x20 && c < 0x7f) ? c : '?';  // the peer's words, printed, never obeyed
  return Status(ErrorCode::kMismatch, fmt::format("{} refused this connection: {}", peer, clean));
}

Result<std::unique_ptr<SecureStream>> greet_server(ChannelSecurity* security, int fd,
                                                   const Uri& uri, const QueueHello& hello,
                                                   Clock::time_point deadline) {
  std::byte raw[kQueueHelloBytes];
  encode_queue_hello(hello, raw);
  if (!security) {
    RS_RETURN_IF_ERROR(
        send_all(fd, raw, sizeof raw, deadline)
            .with_context(fmt::format("sending queue hello to {}", uri.to_string())));
    return std::unique_ptr<SecureStream>();
  }
  RS_ASSIGN_OR_RETURN(auto stream, security->handshake(fd, PeerRole::kClient, uri.host, deadline));
  RS_RETURN_IF_ERROR(
      stream_write_all(*stream, fd, raw, deadline)
          .with_context(fmt::format("after the TLS handshake with {}", uri.to_string())));
  std::byte answer[4];
  Status r = stream_read_exact(*stream, fd, answer, deadline);
  if (!r) {
    // In TLS 1.3 the server checks the client's certificate after the client has finished its
    // part of the handshake, so a refusal arrives here, as an alert.
    const bool alert = r.message().find("alert") != std::string::npos;
    return Status(
        ErrorCode::kMismatch,
        fmt::format("{} {} after the TLS handshake: {} (its log says why)", uri.to_string(),
                    alert ? "refused this side's credentials"
                          : "closed the connection (it does not speak ramshift, or "
                            "refused this side's credentials)",
                    r.message()));
  }
  uint32_t code = load_le<uint32_t>(answer);
  if (code == kAccepted) return stream;
  if (code != kRefusalMarker)
    return Status(ErrorCode::kProtocol,
                  fmt::format("{} answered the queue hello with {:#x}", uri.to_string(), code));
  std::byte len_raw[4];
  RS_RETURN_IF_ERROR(stream_read_exact(*stream, fd, len_raw, deadline));
  std::string text(std::min(load_le<uint32_t>(len_raw), kMaxRefusalText), '\0');
  RS_RETURN_IF_ERROR(stream_read_exact(
      *stream, fd, std::as_writable_bytes(std::span(text.data(), text.size())), deadline));
  return refused_by(uri.to_string(), text);
}

Result<GreetedQueue> greet_client(ChannelSecurity* security, int fd, Clock::time_point deadline) {
  RS_ASSIGN_OR_RETURN(std::byte first, peek_first_byte(fd, deadline));
  const bool speaks_tls = first == kTlsHandshakeRecord;
  GreetedQueue g;
  std::byte raw[kQueueHelloBytes];
  if (!security) {
    if (speaks_tls) {
      discard_input(fd);
      return Status(ErrorCode::kMismatch,
                    "the peer speaks TLS, but this side was started without --tls-dir or "
                    "--tls-psk: give both sides the same --tls-* options");
    }
    RS_RETURN_IF_ERROR(recv_all(fd, raw, sizeof raw, deadline));
    RS_ASSIGN_OR_RETURN(g.hello, decode_queue_hello(raw));
    return g;
  }
  if (!speaks_tls) {
    auto notice = encode_refusal(
        "it accepts only TLS connections (it runs with --tls-dir or --tls-psk); start this side "
        "with the same --tls-* options");
    (void)recv_all(fd, raw, sizeof raw, deadline);
    discard_input(fd);
    (void)send_all(fd, notice.data(), notice.size(), deadline);
    return Status(ErrorCode::kMismatch,
                  "the peer connected without TLS, and this side requires it (--tls-dir or "
                  "--tls-psk); refused before anything was exchanged");
  }
  RS_ASSIGN_OR_RETURN(g.stream, security->handshake(fd, PeerRole::kServer, "", deadline));
  if (Status a = security->authorize(*g.stream); !a) {
    auto notice = encode_refusal(a.message());
    (void)stream_write_all(*g.stream, fd, notice, deadline);
    return a;
  }
  RS_RETURN_IF_ERROR(stream_read_exact(*g.stream, fd, raw, deadline));
  RS_ASSIGN_OR_RETURN(g.hello, decode_queue_hello(raw));
  std::byte accepted[4];
  store_le<uint32_t>(accepted, kAccepted);
  RS_RETURN_IF_ERROR(stream_write_all(*g.stream, fd, accepted, deadline));
  return g;
}

}  // namespace ramshift::transport::tcp
