// BulkAckTracker: the bulk port's bookkeeping, with no sockets and no files, so it is tested
// alone (tests/segments/bulk_ack_tracker_test.cpp). It knows which bulk segment ids are stored
// here and not yet committed, which connections wait for each one's ack, how many acks each
// connection waits for (a connection at the cap stops being read), the ingest file name of each
// stored id (commits arrive by name), and the ids committed recently (a resend after a lost ack
// is acknowledged at once).
//
// The life of an id: Received (kNew) → Storing(name) → Written → Committed(name): acked; or
// Storing → Failed: forgotten, its waiters told. A resend between Storing and Committed only
// joins the waiters. The file is written off the loop, so its commit may arrive before Written:
// it is then held back until Written (acked) or Failed (dropped: the committed file is what a
// failed write left, whole records only, and the forwarder resends them all), so an ack never
// covers a segment whose write failed.
// Thread: whatever thread owns it (the loop, in IngestServer); not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/ulid.h"

namespace oklog {

class BulkAckTracker {
 public:
  using ConnId = uint64_t;
  static constexpr size_t kDefaultMaxUnacked = 64;
  static constexpr size_t kDefaultRecentCommits = 4096;

  explicit BulkAckTracker(size_t max_unacked_per_conn = kDefaultMaxUnacked,
                          size_t recent_commits = kDefaultRecentCommits);

  enum class Arrival {
    kNew,        // not known: store it (Storing, then Written or Failed); nothing recorded yet
    kHeld,       // stored or being stored here: conn now waits for its ack too (counted once)
    kCommitted,  // committed recently: acknowledge it at once; nothing recorded
  };
  Arrival Received(ConnId conn, const Ulid& id);
  // conn stores id (after Received said kNew) in the ingest file `name`: conn waits for its ack.
  void Storing(ConnId conn, const Ulid& id, const std::string& name);

  struct Acks {
    Ulid id;
    std::vector<ConnId> conns;  // every connection that sent id and is still known
  };
  // id's file is written and flushed. Returns the acks if its commit already arrived.
  std::optional<Acks> Written(const Ulid& id);
  // Writing id failed: forgets it (a commit of its file acknowledges nothing). Returns the
  // connections that waited for it (their counts drop), to be told.
  std::vector<ConnId> Failed(const Ulid& id);
  // A store committed the ingest file `name`: the acks when it holds a tracked bulk segment
  // that is written; nullopt otherwise (not a bulk file, a failed one, or one still being
  // written: then Written returns them). Acked ids become recently committed; each waiting
  // connection's count drops.
  std::optional<Acks> Committed(const std::string& name);
  // A connection closed: it waits for nothing any more (the ids stay held: their commit still
  // makes them recent, for a resend on another connection).
  void ForgetConn(ConnId conn);

  // Acks conn waits for; at max_unacked it should not be read until one arrives.
  size_t unacked(ConnId conn) const;
  bool AtCap(ConnId conn) const { return unacked(conn) >= max_unacked_; }
  size_t held() const { return held_.size(); }  // ids stored or storing, not committed
  bool RecentlyCommitted(const Ulid& id) const { return recent_.count(id) != 0; }

 private:
  struct Held {
    std::set<ConnId> waiters;
    bool written = false;
    bool committed = false;  // its commit arrived before Written
  };
  // Removes h, dropping each waiter's count; returns its waiters.
  Acks Take(std::map<Ulid, Held>::iterator h);
  void Remember(const Ulid& id);

  const size_t max_unacked_;
  const size_t recent_commits_;
  std::map<Ulid, Held> held_;             // id -> connections awaiting its ack
  std::map<std::string, Ulid> by_name_;   // ingest file name -> id
  std::map<ConnId, size_t> unacked_;      // only connections waiting for something
  std::set<Ulid> recent_;
  std::deque<Ulid> recent_order_;  // oldest first, at most recent_commits_
};

}  // namespace oklog
