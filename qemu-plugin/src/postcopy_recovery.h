// QEMU's post-copy recovery, driven over QMP. When the migration's channels break during
// post-copy (a cut link, a failed bridge) QEMU cannot go back: the guest runs on the
// destination with part of its memory still on the source. Both QEMUs go to
// `postcopy-paused` and wait; the destination's guest stalls on the first page it lacks.
// The way on is QEMU's own: `migrate-recover URI` on the destination (a new listener), then
// `migrate URI resume=true` on the source, which reconnects, learns which pages arrived and
// sends the rest. Automating it is safe: there is nothing else a paused post-copy can do (a
// cancel would lose the guest), and a resume that meets no listener, or a link still cut,
// only leaves QEMU paused again, so it is retried until the migration's timeout.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "ramshift/qemu/migrate_driver.h"
#include "ramshift/qemu/qmp.h"

namespace ramshift::qemu {

// QEMU's post-copy states in which the source is neither done nor able to be cancelled.
bool is_postcopy_status(const std::string& status);

class PostcopyRecovery {
 public:
  PostcopyRecovery(QmpClient& src, QmpClient& dst, std::string src_uri, std::string dst_uri);
  // Fed every source status the driver polls, with the ms since `migrate`. While the source
  // is postcopy-paused: migrate-recover on the destination (retried while the destination
  // has not paused yet), then migrate resume=true on the source; again after kRetry when QEMU
  // is still (or again) paused.
  void observe(const std::string& src_status, double t_ms);
  const std::vector<PostcopyRecoveryEvent>& events() const { return events_; }

 private:
  QmpClient& src_;
  QmpClient& dst_;
  std::string src_uri_, dst_uri_;
  std::chrono::steady_clock::time_point next_try_{};
  std::vector<PostcopyRecoveryEvent> events_;
};

}  // namespace ramshift::qemu
