#include "postcopy_recovery.h"

#include "ramshift/base/log.h"

namespace ramshift::qemu {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {
// Why 2 s between resumes: QEMU shows postcopy-paused until its migration thread has picked up
// the new channel, and a resume whose connection failed leaves it paused; a second `migrate`
// while the first is still connecting is refused, so it is only a retry, never a duplicate.
constexpr auto kRetry = 2s;
// The destination notices a cut link on its own (its bridge's peer timeout), often a moment
// after the source: migrate-recover is refused until then.
constexpr auto kDestinationPoll = 500ms;
// Keeps the refusal for the report and says it once (the same one comes back every retry).
void note_refusal(PostcopyRecoveryEvent& ev, std::string why) {
  if (why != ev.last_error) log::info("qemu-migrate: recovery not yet: {}", why);
  ev.last_error = std::move(why);
}

}  // namespace

bool is_postcopy_status(const std::string& status) {
  return status == "postcopy-active" || status == "postcopy-paused" ||
         status == "postcopy-recover" || status == "postcopy-recover-setup";
}

PostcopyRecovery::PostcopyRecovery(QmpClient& src, QmpClient& dst, std::string src_uri,
                                   std::string dst_uri)
    : src_(src), dst_(dst), src_uri_(std::move(src_uri)), dst_uri_(std::move(dst_uri)) {}

void PostcopyRecovery::observe(const std::string& src_status, double t_ms) {
  const bool open = !events_.empty() && !events_.back().recovered_at_ms;
  if (src_status != "postcopy-paused") {
    if (open && events_.back().attempts > 0 &&
        (src_status == "postcopy-active" || src_status == "completed")) {
      events_.back().recovered_at_ms = t_ms;
      log::info("qemu-migrate: post-copy recovered {:.0f} ms after it paused ({} attempt(s))",
                t_ms - events_.back().paused_at_ms, events_.back().attempts);
    }
    return;
  }
  if (!open) {
    events_.push_back({.paused_at_ms = t_ms});
    log::warn(
        "qemu-migrate: post-copy paused (its channels broke); recovering: migrate-recover "
        "{} on the destination, then migrate {} resume=true on the source",
        dst_uri_, src_uri_);
  }
  auto& ev = events_.back();
  if (Clock::now() < next_try_) return;
  // "triggered already": the destination still listens from an earlier attempt that no
  // source reached; that listener is the one the resume will meet.
  // Out of band: the destination's main thread may be blocked on a page that only the
  // recovery can bring (a device touching guest memory); in-band commands then wait with it.
  if (auto r = dst_.execute_oob("migrate-recover", {{"uri", dst_uri_}}, 5s);
      !r && r.status().message().find("already") == std::string::npos) {
    note_refusal(ev, "destination: " + r.status().message());
    next_try_ = Clock::now() + kDestinationPoll;
    return;
  }
  if (auto r = src_.execute("migrate", {{"uri", src_uri_}, {"resume", true}}); !r) {
    note_refusal(ev, "source: " + r.status().message());
    next_try_ = Clock::now() + kRetry;
    return;
  }
  ++ev.attempts;
  ev.last_error.clear();
  next_try_ = Clock::now() + kRetry;
  log::info("qemu-migrate: post-copy resume {} issued", ev.attempts);
}

}  // namespace ramshift::qemu
