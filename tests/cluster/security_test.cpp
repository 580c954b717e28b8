// A keyed cluster (-cluster.key-file) against processes without its key, and a key rotation
// under traffic: real `oklog` processes on loopback (the fixture: cluster_fixture.h).
//
// What each attempt gets:
//   - a keyless node, or one with another key, seeded with a member: never a member anywhere;
//     its join (a TCP stream) is dropped before its hello (oklog_rpc_streams_dropped_total{reason=
//     "unauthenticated"}); it stores no record, and the cluster stores every record twice;
//   - a forged `dead` datagram about a member at the highest incarnation: refused and counted
//     (oklog_gossip_packets_refused_total{reason="unauthenticated"}), the member stays alive;
//     a plain RPC hello followed by segment.next: dropped and counted, nothing claimed;
//   - a rolling rotation (add the new key, make it primary, remove the old one, SIGHUP each
//     node each time) while `forward -bulk` writes: nothing refused, no member suspected,
//     every record stored twice; a node holding only the removed key cannot join afterwards.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "cluster_fixture.h"
#include "common/crypto/keyring.h"
#include "gossip/wire.h"
#include "rpc/frame_codec.h"

namespace oklog {
namespace {

std::string NewKey() { return crypto::Keyring::Generate().value(); }

// The cluster name every Node of this test uses (cluster_fixture.h).
std::string ClusterName(const TempDir& dir) { return "t" + std::to_string(std::hash<std::string>{}(dir.path())); }

void SendUdp(uint16_t port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  ::close(fd);
}

class SecurityTest : public ClusterTest {
 protected:
  // 1 ingest + 2 stores, all keyed with the file at keys_.
  void StartKeyed(const std::string& key_lines) {
    keys_ = dir_.path() + "/cluster.keys";
    WriteFile(keys_, key_lines);
    const std::vector<std::pair<std::string, std::string>> keyed = {{"-cluster.key-file", keys_}};
    ingest_.push_back(Add("ingest1", "ingest", keyed));
    store_.push_back(Add("store1", "store", keyed));
    store_.push_back(Add("store2", "store", keyed));
    ASSERT_TRUE(WaitFor([&] {
      for (auto& n : nodes_)
        if (n->LiveMembers() != 3) return false;
      return true;
    }, std::chrono::seconds(20)));
  }
  double Sum(const std::string& metric) {
    double s = 0;
    for (Node* n : {ingest_[0], store_[0], store_[1]}) s += n->Metric(metric);
    return s;
  }
  std::string keys_;
};

TEST_F(SecurityTest, NodesWithoutTheKeyNeverJoinCallNothingAndStoreNothing) {
  StartKeyed(NewKey() + "\n");
  const std::string unauth_packets = "oklog_gossip_packets_refused_total{reason=\"unauthenticated\"}";
  const std::string unauth_streams = "oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}";
  // A keyless store and one with another key, each seeded with the ingester.
  const std::string other_keys = dir_.path() + "/other.keys";
  WriteFile(other_keys, NewKey() + "\n");
  Node* keyless = Add("keyless", "store");
  Node* wrong = Add("wrongkey", "store", {{"-cluster.key-file", other_keys}});
  // Their joins (push/pull over TCP) are refused; they know no member to send datagrams to.
  ASSERT_TRUE(WaitFor([&] { return Sum(unauth_streams) >= 2; }, std::chrono::seconds(10)));
  // Data flows meanwhile, to the keyed stores only.
  std::string a = WriteInput(dir_.path(), "alpha", 6000);
  Forward(a, {ingest_[0]});
  EXPECT_EQ(WaitQueryable(ingest_[0], 6000).ulids.size(), 6000u);
  std::map<std::string, int> copies = CopiesOn(store_);
  size_t not_two = 0;
  for (auto& [u, c] : copies) not_two += c != 2;
  EXPECT_EQ(copies.size(), 6000u);
  EXPECT_EQ(not_two, 0u);
  for (Node* n : {keyless, wrong}) {
    EXPECT_EQ(n->LiveMembers(), 1u) << n->name();  // only itself
    EXPECT_EQ(ParseBody(n->Get("/store/_query").body).ulids.size(), 0u) << n->name();
  }
  for (Node* n : {ingest_[0], store_[0], store_[1]}) EXPECT_EQ(n->LiveMembers(), 3u) << n->name();

  // A forged `dead` about store1 at the highest incarnation, as a keyless process sends it.
  const std::string victim = "127.0.0.1:" + std::to_string(store_[0]->cluster_port());
  gossip::PacketBuilder pb(gossip::ClusterHash(ClusterName(dir_)));
  ASSERT_TRUE(pb.TryAdd(gossip::EncodeMessage(gossip::Dead{~0ull, victim, "intruder"})));
  const std::string forged = std::move(pb).Finish();
  const double refused = Sum(unauth_packets);
  for (Node* n : {ingest_[0], store_[0], store_[1]}) SendUdp(n->cluster_port(), forged);
  ASSERT_TRUE(WaitFor([&] { return Sum(unauth_packets) >= refused + 3; }, std::chrono::seconds(5)));
  // A plain hello, then segment.next (claim a segment) on the ingester's cluster port.
  rpc::Envelope next{rpc::Envelope::Kind::kRequest, 1, "segment.next", 0, ""};
  const double dropped = ingest_[0]->Metric(unauth_streams);
  ASSERT_TRUE(SendAndDrain(ingest_[0]->cluster_port(),
                           rpc::EncodeFrame(rpc::EncodeHello({rpc::kClusterProtocolVersion, ClusterName(dir_), "x"})) +
                               rpc::EncodeFrame(rpc::EncodeEnvelope(next))));
  EXPECT_EQ(ingest_[0]->Metric(unauth_streams), dropped + 1);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  for (Node* n : {ingest_[0], store_[0], store_[1]}) EXPECT_EQ(n->LiveMembers(), 3u) << n->name();
  std::string b = WriteInput(dir_.path(), "beta", 3000);
  Forward(b, {ingest_[0]});
  EXPECT_EQ(WaitQueryable(store_[1], 9000).ulids.size(), 9000u);
  const std::string health = ingest_[0]->Get("/health").body;
  EXPECT_EQ(health, "OK\n");  // keyed: no "unauthenticated cluster" line
  EXPECT_NE(keyless->Get("/health").body.find("unauthenticated cluster"), std::string::npos);
}

TEST_F(SecurityTest, ARollingKeyRotationUnderTrafficLosesNothingAndSuspectsNobody) {
  const std::string old_key = NewKey(), new_key = NewKey();
  StartKeyed(old_key + "\n");
  // Acknowledged writers run through the whole rotation: `forward -bulk` of 2,000 records at a
  // time, again and again until the last step is done.
  std::atomic<bool> rotated{false};
  size_t records = 0;
  std::thread writer([&] {
    for (int round = 0; !rotated.load() || round < 3; ++round) {
      std::string input = WriteInput(dir_.path(), "rot" + std::to_string(round), 2000);
      Process f({OklogBinary(), "forward", "-bulk", "127.0.0.1:" + std::to_string(ingest_[0]->bulk_port())},
                dir_.path(), "forward-bulk", input);
      EXPECT_EQ(f.Wait(std::chrono::seconds(60)), 0) << f.Stderr();
      records += 2000;
    }
  });
  const char* steps[] = {"add", "make primary", "remove old"};
  const std::string files[] = {old_key + "\n" + new_key + "\n", new_key + "\n" + old_key + "\n", new_key + "\n"};
  for (int step = 0; step < 3; ++step) {
    WriteFile(keys_, files[step]);
    for (Node* n : {ingest_[0], store_[0], store_[1]}) {
      n->Signal(SIGHUP);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // rolling, node by node
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    for (Node* n : {ingest_[0], store_[0], store_[1]})
      EXPECT_EQ(n->LiveMembers(), 3u) << n->name() << " after step " << steps[step];
  }
  rotated = true;
  writer.join();
  ASSERT_GE(records, 6000u);
  EXPECT_EQ(WaitQueryable(store_[0], records).ulids.size(), records);
  std::map<std::string, int> copies;
  ASSERT_TRUE(WaitFor([&] {
    copies = CopiesOn(store_);
    size_t two = 0;
    for (auto& [u, c] : copies) two += c == 2;
    return copies.size() == records && two == records;
  }, std::chrono::seconds(30)));
  EXPECT_EQ(Sum("oklog_gossip_packets_refused_total{reason=\"unauthenticated\"}"), 0);
  EXPECT_EQ(Sum("oklog_gossip_suspicions_total"), 0);
  EXPECT_EQ(Sum("oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}"), 0);
  // The connections sealed with the old key closed at the last step (and redialled).
  EXPECT_GT(Sum("oklog_rpc_streams_dropped_total{reason=\"rekeyed\"}"), 0);
  // The old key alone no longer gets in.
  const std::string old_only = dir_.path() + "/old.keys";
  WriteFile(old_only, old_key + "\n");
  Node* late = Add("oldkey", "store", {{"-cluster.key-file", old_only}});
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(late->LiveMembers(), 1u);
  for (Node* n : {ingest_[0], store_[0], store_[1]}) EXPECT_EQ(n->LiveMembers(), 3u) << n->name();
}

TEST_F(SecurityTest, ABadKeyFileIsRefusedAtStartNamingTheFlag) {
  const std::string bad = dir_.path() + "/bad.keys";
  WriteFile(bad, "not a key\n");
  Process p({OklogBinary(), "store", "-api", "127.0.0.1:0", "-cluster", "127.0.0.1:0", "-store.path",
             dir_.path() + "/s", "-cluster.key-file", bad},
            dir_.path(), "badkey");
  EXPECT_NE(p.Wait(std::chrono::seconds(20)), 0);
  EXPECT_NE(p.Stderr().find("-cluster.key-file"), std::string::npos) << p.Stderr();
  EXPECT_NE(p.Stderr().find("line 1"), std::string::npos) << p.Stderr();
}

}  // namespace
}  // namespace oklog
