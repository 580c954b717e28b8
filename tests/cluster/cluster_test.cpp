// The cluster data path end to end (the fixture: cluster_fixture.h).
#include "cluster_fixture.h"

namespace oklog {
namespace {

// The default suite forwards 200,000 records; the `slow` build of this file (cluster_slow_test)
// forwards 1,000,000 and runs only this test.
#ifdef OKLOG_CLUSTER_SLOW
constexpr size_t kForwardedRecords = 1000000;
class ClusterSlowTest : public ClusterTest {};  // a test name of its own for CTest
#define OKLOG_CLUSTER_SUITE ClusterSlowTest
#else
constexpr size_t kForwardedRecords = 200000;
#define OKLOG_CLUSTER_SUITE ClusterTest
#endif

TEST_F(OKLOG_CLUSTER_SUITE, RecordsAreQueryableOnceAnywhereAndStoredTwiceAndANewStoreJoins) {
  StartCluster();
  const size_t kHalf = kForwardedRecords / 2;
  std::string a = WriteInput(dir_.path(), "alpha", kHalf);
  std::string b = WriteInput(dir_.path(), "beta", kHalf);
  std::thread fa([&] { Forward(a, {ingest_[0]}); });
  Forward(b, {ingest_[1]});
  fa.join();
  // A query to an ingest-only node: every record once, in ULID order.
  Body all = WaitQueryable(ingest_[2], 2 * kHalf, std::chrono::seconds(kHalf > 200000 ? 240 : 90));
  ASSERT_EQ(all.ulids.size(), 2 * kHalf);
  EXPECT_TRUE(all.sorted);
  EXPECT_EQ(all.payloads.size(), 2 * kHalf);
  EXPECT_EQ(std::set<std::string>(all.ulids.begin(), all.ulids.end()).size(), 2 * kHalf);
  // A client that stops reading for a while. Whether every store finishes sending while the
  // merge waits for the client depends on the answer's size against the node's buffers and the
  // stores' flow-control windows, so answers of several sizes (about 4 to 14 MB) are tried: each
  // must still end, complete (with 1,000,000 records the answer once stalled for ever here).
  for (int k = kHalf > 200000 ? 2 : 5; k <= (kHalf > 200000 ? 4 : 9); ++k) {
    const std::string re = std::string(kHalf > 200000 ? "alpha" : "(alpha|beta)") + " [1-" + std::to_string(k) + "]";
    size_t want = 0;
    for (size_t i = 0; i < kHalf; ++i) want += std::to_string(i).front() - '0' <= k && i > 0;
    if (kHalf <= 200000) want *= 2;
    std::string slow = ingest_[2]->GetPausing("/store/query?regex=true&q=" + UrlEncode(re), std::chrono::milliseconds(1500));
    EXPECT_EQ(ParseBody(slow).ulids.size(), want) << re;
  }
  // Each record on exactly two store nodes (node-local queries).
  std::map<std::string, int> copies;
  for (Node* s : store_)
    for (const std::string& u : ParseBody(s->Get("/store/_query").body).ulids) copies[u]++;
  ASSERT_EQ(copies.size(), 2 * kHalf);
  size_t not_two = 0;
  for (auto& [u, c] : copies) not_two += c != 2;
  EXPECT_EQ(not_two, 0u);
  auto head = ingest_[2]->Get("/store/query", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("X-Oklog-Nodes-Queried"), "3");
  EXPECT_EQ(head.Header("X-Oklog-Error-Count"), "0");

  // A 7th node, told only the seed, starts pulling and answering.
  Node* seventh = Add("store4", "store");
  ASSERT_TRUE(WaitFor([&] { return seventh->LiveMembers() == 7; }, std::chrono::seconds(20)));
  // Batches until the newcomer has stored some (claims and replica targets are spread at random).
  size_t total = 2 * kHalf;
  auto stored = [&] {
    return seventh->Metric("oklog_store_written_records_total") + seventh->Metric("oklog_store_replicated_records_total");
  };
  for (int i = 0; i < 20 && stored() == 0; ++i) {
    std::string c = WriteInput(dir_.path(), "gamma" + std::to_string(i), 5000);
    Forward(c, {ingest_[2]});
    total += 5000;
    WaitFor([&] { return stored() > 0; }, std::chrono::seconds(2));
  }
  EXPECT_GT(stored(), 0);
  Body more = WaitQueryable(seventh, total);
  EXPECT_EQ(more.ulids.size(), total);
  EXPECT_TRUE(more.sorted);
  // No answer stalled on the way (a stall is retried by WaitQueryable, so it must be caught here).
  for (auto& n : nodes_) EXPECT_EQ(n->timeouts_, 0) << n->name();
}

#ifndef OKLOG_CLUSTER_SLOW
TEST_F(ClusterTest, KilledStoreNodeLeavesEveryRecordQueryable206WhileBelievedAlive) {
  StartCluster();
  std::string a = WriteInput(dir_.path(), "alpha", 20000);
  Forward(a, {ingest_[0], ingest_[1]});
  ASSERT_EQ(WaitQueryable(ingest_[0], 20000).ulids.size(), 20000u);
  store_[2]->Kill9();
  // Right after the kill, peers still believe it alive: 206 with the error counted.
  auto r = ingest_[0]->Get("/store/query");
  if (r.status == 206) {
    EXPECT_EQ(r.Header("X-Oklog-Error-Count"), "1");
  }
  EXPECT_EQ(ParseBody(r.body).ulids.size(), 20000u);
  // Once it is declared dead: 200 and still every record.
  ASSERT_TRUE(WaitFor([&] { return ingest_[0]->Get("/store/query", "HEAD").status == 200; }, std::chrono::seconds(30)));
  r = ingest_[0]->Get("/store/query");
  EXPECT_EQ(r.status, 200);
  Body all = ParseBody(r.body);
  EXPECT_EQ(all.ulids.size(), 20000u);
  EXPECT_EQ(all.payloads.size(), 20000u);
  // Two stores remain: still RF 2, ingestion continues.
  std::string b = WriteInput(dir_.path(), "beta", 10000);
  Forward(b, {ingest_[1]});
  EXPECT_EQ(WaitQueryable(ingest_[2], 30000).ulids.size(), 30000u);
}

TEST_F(ClusterTest, StoreKilledMidConsumeLosesNothingAndShowsNoDuplicate) {
  StartCluster();
  std::string a = WriteInput(dir_.path(), "alpha", 150000);
  std::thread f([&] { Forward(a, {ingest_[0], ingest_[1]}); });
  // Kill a store as soon as it has started consuming.
  Node* victim = nullptr;
  ASSERT_TRUE(WaitFor([&] {
    for (Node* s : store_)
      if (s->Metric("oklog_store_consumed_bytes") > 0) victim = s;
    return victim != nullptr;
  }, std::chrono::seconds(30)));
  victim->Kill9();
  f.join();
  // Its claims time out (3 s) and are consumed again by the others.
  Body all = WaitQueryable(ingest_[2], 150000, std::chrono::seconds(90));
  EXPECT_EQ(all.ulids.size(), 150000u);
  EXPECT_TRUE(all.sorted);
  EXPECT_EQ(all.payloads.size(), 150000u);
  for (auto& [p, n] : all.payloads) ASSERT_EQ(n, 1u) << p;
}

// Bulk mode: segments are acknowledged only once stored twice. With one store alive (RF 2)
// nothing can be acknowledged, so the forwarder keeps its window of segments; killing the
// ingester that holds them makes the forwarder resend them to the other one. When a second
// store arrives, everything is stored, acknowledged, and the forwarder exits 0; the killed
// ingester comes back with its copies on disk, which are stored too: every record still shows
// exactly once.
TEST_F(ClusterTest, BulkForwarderResendsUnacknowledgedSegmentsAndNothingShowsTwice) {
  Node* st1 = Add("store1", "store");  // the seed: it stays up
  Node* in1 = Add("ingest1", "ingest");
  Node* in2 = Add("ingest2", "ingest");
  ASSERT_TRUE(WaitFor([&] { return st1->LiveMembers() == 3; }, std::chrono::seconds(20)));
  const size_t kN = 40000;
  std::string input = WriteInput(dir_.path(), "bulk", kN);
  Process fwd({OklogBinary(), "forward", "-bulk", "-bulk.segment-size", "65536", "-bulk.window", "8",
               "127.0.0.1:" + std::to_string(in1->bulk_port()), "127.0.0.1:" + std::to_string(in2->bulk_port())},
              dir_.path(), "forward-bulk", input);
  // The window fills on ingest1 and stays there: no acknowledgement is possible yet.
  ASSERT_TRUE(WaitFor([&] { return in1->Metric("oklog_ingest_bulk_unacked_segments") >= 8; }, std::chrono::seconds(20)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past the segment age: the window is full
  const double held = in1->Metric("oklog_ingest_bulk_unacked_segments");
  EXPECT_LE(held, 10);  // the window (8), give or take the segment being cut
  EXPECT_TRUE(fwd.running());
  EXPECT_EQ(in1->Metric("oklog_ingest_bulk_acks_total"), 0);
  in1->Kill9();
  // The forwarder resends its unacknowledged segments to ingest2 (still unacknowledged).
  ASSERT_TRUE(WaitFor([&] { return in2->Metric("oklog_ingest_bulk_unacked_segments") >= held; }, std::chrono::seconds(20)))
      << fwd.Stderr();
  // A second store: segments are replicated twice, acknowledged, and the forward completes.
  Add("store2", "store");
  EXPECT_EQ(fwd.Wait(std::chrono::seconds(60)), 0) << fwd.Stderr();
  EXPECT_GE(in2->Metric("oklog_ingest_bulk_acks_total"), held);
  // ingest1 returns with the 8 segments it stored before the kill: they are consumed as well.
  in1->Start();
  ASSERT_TRUE(WaitFor([&] { return in1->Metric("oklog_ingest_committed_segments") >= held; },
                      std::chrono::seconds(30)));
  Body all = WaitQueryable(in2, kN);
  EXPECT_EQ(all.ulids.size(), kN);
  EXPECT_TRUE(all.sorted);
  EXPECT_EQ(all.payloads.size(), kN);
  for (auto& [p, n] : all.payloads) ASSERT_EQ(n, 1u) << p;
  // The copies really exist: the stores hold more than two copies of some records.
  uint64_t local = 0;
  Node* st2 = nodes_.back().get();
  for (Node* s : {st1, st2}) local += ParseBody(s->Get("/store/_query").body).ulids.size();
  EXPECT_EQ(local, 2 * kN);  // each store's own answer is deduplicated too
  EXPECT_GT(st1->Metric("oklog_store_written_records_total") + st1->Metric("oklog_store_replicated_records_total") +
                st2->Metric("oklog_store_written_records_total") + st2->Metric("oklog_store_replicated_records_total"),
            2.0 * kN);
}

TEST_F(ClusterTest, SigtermedIngesterFailsOverAndLosesNothing) {
  StartCluster();
  // A paced source (20 chunks of 5,000 lines, 150 ms apart), so the SIGTERM lands while the
  // forwarder is still sending to the victim.
  const size_t kChunks = 20, kPerChunk = 5000, kN = kChunks * kPerChunk;
  std::string script = "for f in";
  for (size_t c = 0; c < kChunks; ++c) script += " " + WriteInput(dir_.path(), "c" + std::to_string(c), kPerChunk);
  // The victim is an ingest-only node: SIGTERM is its draining leave.
  Node* victim = ingest_[1];
  script += "; do cat $f; sleep 0.15; done | " + std::filesystem::absolute(OklogBinary()).string() +
            " forward -debug 127.0.0.1:" +
            std::to_string(victim->fast_port()) + " 127.0.0.1:" + std::to_string(ingest_[2]->fast_port());
  Process fwd({"/bin/sh", "-c", script}, dir_.path(), "paced-forward");
  ASSERT_TRUE(WaitFor([&] { return victim->Metric("oklog_ingest_writer_records_written_total") >= 2 * kPerChunk; },
                      std::chrono::seconds(30)))
      << fwd.Stderr();
  EXPECT_EQ(victim->Term(), 0);
  EXPECT_EQ(fwd.Wait(std::chrono::seconds(60)), 0) << fwd.Stderr();
  // The forwarder noticed the leave mid-stream and handed over at a line boundary.
  EXPECT_NE(fwd.Stderr().find("is leaving; handing over"), std::string::npos) << fwd.Stderr();
  EXPECT_GT(ingest_[2]->Metric("oklog_ingest_writer_records_written_total"), 0);
  // Every line exactly once: nothing lost in the victim's socket, no line sent twice. The
  // draining leave kept the victim up until the stores had consumed all it had.
  Body all = WaitQueryable(ingest_[0], kN, std::chrono::seconds(60));
  EXPECT_EQ(all.ulids.size(), kN);
  EXPECT_EQ(all.payloads.size(), kN);
  EXPECT_TRUE(all.sorted);
}

TEST_F(ClusterTest, GarbageOversizeAndWrongClusterOnTheClusterPortAreDroppedAndCounted) {
  StartCluster();
  Node* target = store_[0];
  auto send = [&](const std::string& bytes) { ASSERT_TRUE(SendAndDrain(target->cluster_port(), bytes)); };
  auto frame = [](const std::string& payload) {
    uint32_t n = htonl(static_cast<uint32_t>(payload.size()));
    return std::string(reinterpret_cast<char*>(&n), 4) + payload;
  };
  send("GET / HTTP/1.1\r\n\r\n");                         // garbage: an absurd length
  send(std::string("\x01\x00\x00\x01", 4) + "xxxx");     // 16 MiB + 1: oversize
  // msgpack ["oklog", 1, "other", "x"]: a hello from another cluster.
  send(frame(std::string("\x94\xa5oklog\x01\xa5other\xa1x", 16)));
  send(frame("\xc1\xc1\xc1"));                          // not msgpack
  EXPECT_GE(target->Metric("oklog_rpc_streams_dropped_total{reason=\"oversize\"}"), 2);
  EXPECT_GE(target->Metric("oklog_rpc_streams_dropped_total{reason=\"wrong_cluster\"}"), 1);
  EXPECT_GE(target->Metric("oklog_rpc_streams_dropped_total{reason=\"malformed\"}"), 1);
  // The cluster keeps working.
  std::string a = WriteInput(dir_.path(), "alpha", 5000);
  Forward(a, {ingest_[0]});
  EXPECT_EQ(WaitQueryable(ingest_[1], 5000).ulids.size(), 5000u);
  EXPECT_EQ(target->LiveMembers(), 6u);
}

// A store frozen by SIGSTOP (alive to the kernel, silent to everyone) stalls nothing: a query
// answers within seconds (206 while the store is still believed alive), every record is still
// found on the other copies, and new records are stored twice on the two healthy stores while
// it stays frozen. After SIGCONT it rejoins and answers are complete again.
TEST_F(ClusterTest, FrozenStoreStallsNeitherQueriesNorIngestion) {
  StartCluster();
  std::string a = WriteInput(dir_.path(), "alpha", 20000);
  Forward(a, {ingest_[0]});
  ASSERT_EQ(WaitQueryable(ingest_[0], 20000).ulids.size(), 20000u);
  // Freeze a store while a 100,000-record forward is being consumed, so batches are in flight
  // to it.
  std::string b = WriteInput(dir_.path(), "beta", 100000);
  const double consumed0 = store_[0]->Metric("oklog_store_consumed_bytes");
  std::thread fb([&] { Forward(b, {ingest_[0], ingest_[1]}); });
  Node* frozen = store_[2];
  WaitFor([&] { return store_[0]->Metric("oklog_store_consumed_bytes") > consumed0; }, std::chrono::seconds(20));
  frozen->Signal(SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  // A query at once: the frozen store is still believed alive; it is left out within
  // -query.peer-answer-timeout (5 s by default), or sooner once gossip suspects it, and the
  // answer says so.
  auto r = ingest_[2]->Get("/store/query?q=alpha");
  const double first_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "first query %d in %.2f s\n", r.status, first_s);
  EXPECT_TRUE(r.status == 206 || r.status == 200) << r.status;
  if (r.status == 206) {
    EXPECT_EQ(r.Header("X-Oklog-Error-Count"), "1");
  }
  EXPECT_LT(first_s, 9.0) << "a query waited on the frozen store";
  EXPECT_EQ(ParseBody(r.body).payloads.size(), 20000u);  // every record has a copy elsewhere
  fb.join();
  // The new records, stored at the healthy stores' pace while it stays frozen, two copies each.
  Body all = WaitQueryable(ingest_[2], 120000, std::chrono::seconds(30));
  EXPECT_EQ(all.payloads.size(), 120000u);
  const double frozen_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::map<std::string, int> copies;
  for (Node* s : {store_[0], store_[1]})
    for (const std::string& line : ParseBody(s->Get("/store/_query?q=beta").body).ulids) copies[line]++;
  size_t two = 0;
  for (auto& [u, c] : copies) two += c == 2;
  // Every new record is on a healthy store, and those consumed after the freeze on both.
  EXPECT_EQ(copies.size(), 100000u);
  std::fprintf(stderr, "frozen phase %.2f s; beta records on both healthy stores: %zu; copies retargeted: %g\n",
               frozen_s, two,
               store_[0]->Metric("oklog_store_replica_copy_failures_total") +
                   store_[1]->Metric("oklog_store_replica_copy_failures_total"));
  EXPECT_LT(frozen_s, 40.0);
  for (Node* n : {ingest_[0], ingest_[1], ingest_[2], store_[0], store_[1]}) EXPECT_EQ(n->timeouts_, 0) << n->name();
  frozen->Signal(SIGCONT);
  // Back: a complete answer (200) with every record once.
  ASSERT_TRUE(WaitFor([&] {
    auto h = ingest_[2]->Get("/store/query", "HEAD");
    return h.status == 200 && h.Header("X-Oklog-Nodes-Queried") == "3";
  }, std::chrono::seconds(30)));
  Body back = ParseBody(ingest_[2]->Get("/store/query").body);
  EXPECT_EQ(back.ulids.size(), 120000u);
  EXPECT_EQ(back.payloads.size(), 120000u);
  EXPECT_TRUE(back.sorted);
}

// An ingester that takes a bulk forwarder's segments and never acknowledges them (frozen by
// SIGSTOP: its kernel still accepts the connection and the bytes) is left after
// -bulk.ack-timeout: the forwarder resends everything to the next ingester and exits 0 once all
// is stored. When the frozen one resumes, its copies are stored too, and show once.
TEST_F(ClusterTest, BulkForwarderLeavesAnIngesterThatNeverAcknowledges) {
  Node* st1 = Add("store1", "store");
  Add("store2", "store");
  Node* in1 = Add("ingest1", "ingest");
  Node* in2 = Add("ingest2", "ingest");
  ASSERT_TRUE(WaitFor([&] { return st1->LiveMembers() == 4; }, std::chrono::seconds(20)));
  in1->Signal(SIGSTOP);
  const size_t kN = 20000;
  std::string input = WriteInput(dir_.path(), "bulk", kN);
  const auto t0 = std::chrono::steady_clock::now();
  Process fwd({OklogBinary(), "forward", "-bulk", "-bulk.ack-timeout", "2s", "-bulk.segment-size", "65536",
               "127.0.0.1:" + std::to_string(in1->bulk_port()), "127.0.0.1:" + std::to_string(in2->bulk_port())},
              dir_.path(), "forward-bulk", input);
  EXPECT_EQ(fwd.Wait(std::chrono::seconds(60)), 0) << fwd.Stderr();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 30.0);
  EXPECT_NE(fwd.Stderr().find("no acknowledgement within -bulk.ack-timeout"), std::string::npos) << fwd.Stderr();
  EXPECT_GT(in2->Metric("oklog_ingest_bulk_acks_total"), 0);
  in1->Signal(SIGCONT);
  Body all = WaitQueryable(in2, kN);
  EXPECT_EQ(all.ulids.size(), kN);
  EXPECT_EQ(all.payloads.size(), kN);
  for (auto& [p, n] : all.payloads) ASSERT_EQ(n, 1u) << p;
  // The resumed ingester's copies are consumed as well, and still nothing shows twice.
  WaitFor([&] { return in1->Metric("oklog_ingest_committed_segments") > 0; }, std::chrono::seconds(30));
  Body again = ParseBody(in2->Get("/store/query").body);
  EXPECT_EQ(again.ulids.size(), kN);
  EXPECT_TRUE(again.sorted);
}

// The holdings check (segments/holdings.h). Replication factor 1 and two stores: each batch is on
// one store. The store that leaves (gracefully: `left`, not `dead`) takes its batches with it; the
// other store knows them from their holdings, so the answer is a 206 naming the store and the
// records it took, never a 200 short of them.
TEST_F(ClusterTest, AStoreThatLeftWithTheOnlyCopiesMakesA206NamingItAndItsRecords) {
  const std::vector<std::pair<std::string, std::string>> rf1 = {{"-store.segment-replication-factor", "1"}};
  Node* in = Add("ingest1", "ingest", rf1);
  Node* st1 = Add("store1", "store", rf1);
  Node* st2 = Add("store2", "store", rf1);
  ASSERT_TRUE(WaitFor([&] { return in->LiveMembers() == 3 && st2->LiveMembers() == 3; }, std::chrono::seconds(20)));
  // Batches of 5,000 (each placed on one store at random) until both stores hold some.
  size_t total = 0, on1 = 0, on2 = 0;
  for (int i = 0; i < 20 && (on1 == 0 || on2 == 0); ++i) {
    Forward(WriteInput(dir_.path(), "alpha" + std::to_string(i), 5000), {in});
    total += 5000;
    ASSERT_EQ(WaitQueryable(in, total).ulids.size(), total);
    on1 = ParseBody(st1->Get("/store/_query").body).ulids.size();
    on2 = ParseBody(st2->Get("/store/_query").body).ulids.size();
  }
  ASSERT_GT(on1, 0u);
  ASSERT_GT(on2, 0u);
  ASSERT_EQ(on1 + on2, total);
  // Two more pull rounds on store1 after the last batch: it knows everything store2 holds.
  const double pulls = st1->Metric("oklog_store_holdings_pulls_total");
  ASSERT_TRUE(WaitFor([&] { return st1->Metric("oklog_store_holdings_pulls_total") >= pulls + 2; },
                      std::chrono::seconds(20)));
  const std::string gone = "127.0.0.1:" + std::to_string(st2->cluster_port());
  EXPECT_EQ(st2->Term(), 0);
  HttpClientResponse r;
  ASSERT_TRUE(WaitFor([&] {
    r = in->Get("/store/query");
    const size_t got = ParseBody(r.body).ulids.size();
    // At no point a 200 short of the records store2 took.
    EXPECT_FALSE(r.status == 200 && got < total) << "200 with " << got << " of " << total << " records";
    return r.status == 206 && !r.Header("X-Oklog-Missing-Nodes").empty();
  }, std::chrono::seconds(30)));
  EXPECT_EQ(r.Header("X-Oklog-Missing-Nodes"), gone);
  EXPECT_EQ(r.Header("X-Oklog-Missing-Records"), std::to_string(on2));
  EXPECT_FALSE(r.Header("X-Oklog-Missing-Ranges").empty());
  EXPECT_GE(std::stoi(r.Header("X-Oklog-Error-Count")), 1);
  EXPECT_EQ(ParseBody(r.body).ulids.size(), on1);
  // A window before any record: nothing of it is missing, a complete 200.
  auto early = in->Get("/store/query?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z");
  EXPECT_EQ(early.status, 200);
  EXPECT_TRUE(early.Header("X-Oklog-Missing-Nodes").empty());
}

// Two of three stores killed with replication factor 2: the survivor holds about two thirds of
// the records, and the latest batches of the dead pair may be known to nobody. Every answer from
// then on is a 206 naming both, never a 200 short of records.
TEST_F(ClusterTest, TwoOfThreeStoresDeadMakeEveryAnswerA206NamingThem) {
  StartCluster();
  std::string a = WriteInput(dir_.path(), "alpha", 20000);
  Forward(a, {ingest_[0], ingest_[1]});
  ASSERT_EQ(WaitQueryable(ingest_[0], 20000).ulids.size(), 20000u);
  const std::string d1 = "127.0.0.1:" + std::to_string(store_[1]->cluster_port());
  const std::string d2 = "127.0.0.1:" + std::to_string(store_[2]->cluster_port());
  store_[1]->Kill9();
  store_[2]->Kill9();
  HttpClientResponse r;
  ASSERT_TRUE(WaitFor([&] {
    r = ingest_[0]->Get("/store/query");
    const size_t got = ParseBody(r.body).ulids.size();
    EXPECT_FALSE(r.status == 200 && got < 20000u) << "200 with " << got << " of 20000 records";
    const std::string nodes = r.Header("X-Oklog-Missing-Nodes");
    return r.status == 206 && nodes.find(d1) != std::string::npos && nodes.find(d2) != std::string::npos;
  }, std::chrono::seconds(40)));
  EXPECT_GE(std::stoi(r.Header("X-Oklog-Error-Count")), 2);
  EXPECT_LE(ParseBody(r.body).ulids.size(), 20000u);
  // Still so a while later (declared dead, not forgotten).
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(ingest_[2]->Get("/store/query", "HEAD").status, 206);
}

// Repair: one of three stores killed (replication factor 2). Its batches are at one copy on the
// two survivors; after -store.repair-delay each is copied to the other survivor, so every record
// is again on two live stores, and the answer is a complete 200.
TEST_F(ClusterTest, AKilledStoresRecordsAreRepairedBackToTwoLiveCopies) {
  const std::vector<std::pair<std::string, std::string>> repair = {{"-store.repair-delay", "3s"}};
  Node* in = Add("ingest1", "ingest", repair);
  std::vector<Node*> st;
  for (int i = 1; i <= 3; ++i) st.push_back(Add("store" + std::to_string(i), "store", repair));
  ASSERT_TRUE(WaitFor([&] { return in->LiveMembers() == 4 && st[2]->LiveMembers() == 4; }, std::chrono::seconds(20)));
  size_t total = 0;
  for (int i = 0; i < 4; ++i) {
    Forward(WriteInput(dir_.path(), "alpha" + std::to_string(i), 5000), {in});
    total += 5000;
    ASSERT_EQ(WaitQueryable(in, total).ulids.size(), total);
  }
  // The victim: the store holding the most records (it holds some: 2 copies on 3 stores).
  Node* victim = st[0];
  size_t most = 0;
  for (Node* s : st) {
    const size_t n = ParseBody(s->Get("/store/_query").body).ulids.size();
    if (n > most) most = n, victim = s;
  }
  std::vector<Node*> alive;
  for (Node* s : st)
    if (s != victim) alive.push_back(s);
  victim->Kill9();
  const auto t0 = std::chrono::steady_clock::now();
  // Before the repair delay is out, the survivors count what lacks a second live copy, in
  // batches, records and (estimated) bytes.
  EXPECT_TRUE(WaitFor([&] {
    for (Node* s : alive)
      if (s->Metric("oklog_store_under_replicated_records") > 0 && s->Metric("oklog_store_under_replicated_bytes") > 0)
        return true;
    return false;
  }, std::chrono::seconds(15)));
  size_t below = 0;
  ASSERT_TRUE(WaitFor([&] {
    auto c = CopiesOn(alive);
    below = 0;
    for (auto& [u, n] : c) below += n < 2;
    return c.size() == total && below == 0;
  }, std::chrono::seconds(60))) << below << " records still below two live copies";
  std::fprintf(stderr, "every record back at 2 live copies %.1f s after the kill\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  double repaired = 0;
  for (Node* s : alive) repaired += s->Metric("oklog_store_repaired_batches_total");
  EXPECT_GT(repaired, 0);
  for (Node* s : alive)
    ASSERT_TRUE(WaitFor([&] { return s->Metric("oklog_store_under_replicated_batches") == 0; }, std::chrono::seconds(10)));
  auto r = in->Get("/store/query");
  EXPECT_EQ(r.status, 200) << r.Header("X-Oklog-Missing-Nodes");
  Body all = ParseBody(r.body);
  EXPECT_EQ(all.ulids.size(), total);
  EXPECT_EQ(all.payloads.size(), total);
}

// Rebalance and copies beyond N: two stores hold every record (replication factor 2); a third
// joins. The two move placement buckets (100 ms here) to it at -store.repair-rate, each making a
// third copy that the mover then drops, until every store holds within 20 % of the mean, every
// record is on exactly two stores again, and answers stay complete throughout.
TEST_F(ClusterTest, ANewStoreTakesItsShareAndNoRecordKeepsAThirdCopy) {
  const auto& flags = kShortBuckets;
  Node* in = Add("ingest1", "ingest", flags);
  std::vector<Node*> st;
  for (int i = 1; i <= 2; ++i) st.push_back(Add("store" + std::to_string(i), "store", flags));
  ASSERT_TRUE(WaitFor([&] { return in->LiveMembers() == 3 && st[1]->LiveMembers() == 3; }, std::chrono::seconds(20)));
  // More than 60 buckets of records. A store may move a bucket only where it ranks after the
  // target and the other holder (a third of them), so a store's share is a binomial draw over
  // the buckets: with about 60 or more it lands within 20 % of the mean.
  size_t total = 0;
  for (int i = 0; i < 60; ++i) {
    Forward(WriteInput(dir_.path(), "beta" + std::to_string(i), 300), {in});
    total += 300;
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
  }
  ASSERT_EQ(WaitQueryable(in, total).ulids.size(), total);
  st.push_back(Add("store3", "store", flags));
  size_t bad = 0;
  std::vector<size_t> held;
  int incomplete = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const bool settled = WaitFor([&] {
    auto r = in->Get("/store/query");
    if (r.status != 200 || ParseBody(r.body).payloads.size() != total) ++incomplete;
    auto copies = CopiesOn(st, &held);
    bad = 0;
    for (auto& [u, n] : copies) bad += n != 2;
    const double mean = 2.0 * static_cast<double>(total) / 3.0;
    bool even = true;
    for (size_t n : held) even = even && std::abs(static_cast<double>(n) - mean) <= 0.2 * mean;
    return copies.size() == total && bad == 0 && even;
  }, std::chrono::seconds(120));
  std::string figures;
  for (size_t n : held) figures += " " + std::to_string(n);
  ASSERT_TRUE(settled) << bad << " records not on exactly 2 stores; records per store:" << figures;
  std::fprintf(stderr, "rebalanced in %.1f s; records per store:%s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), figures.c_str());
  EXPECT_EQ(incomplete, 0) << "answers that were not a complete 200 during the rebalance";
  double moved = 0, dropped = 0;
  for (Node* s : st) {
    moved += s->Metric("oklog_store_rebalanced_batches_total");
    dropped += s->Metric("oklog_store_dropped_copies_total");
  }
  EXPECT_GT(moved, 0);
  EXPECT_GT(dropped, 0);
  EXPECT_GT(st[2]->Metric("oklog_store_held_records"), 0);
}

// Copies beyond N after a frozen store: while store3 is stopped (SIGSTOP), the consumers' copies
// to it time out and go to the other stores, and when it resumes it stores the copies it had
// been sent: some batches end on three stores, next to batches on two. With short placement
// buckets, every record is back on exactly two stores soon after (the last-ranked holder drops
// its copy, first copying the bucket to a lower-ranked store where only some of its batches are
// beyond N), and every answer stays complete.
TEST_F(ClusterTest, AFrozenStoreLeavesNoRecordOnAThirdStore) {
  const auto& flags = kShortBuckets;
  Node* in = Add("ingest1", "ingest", flags);
  std::vector<Node*> st;
  for (int i = 1; i <= 3; ++i) st.push_back(Add("store" + std::to_string(i), "store", flags));
  ASSERT_TRUE(WaitFor([&] { return in->LiveMembers() == 4 && st[2]->LiveMembers() == 4; }, std::chrono::seconds(20)));
  size_t total = 0;
  for (int i = 0; i < 30; ++i) {
    if (i == 10) st[2]->Signal(SIGSTOP);
    if (i == 20) st[2]->Signal(SIGCONT);
    Forward(WriteInput(dir_.path(), "gamma" + std::to_string(i), 300), {in});
    total += 300;
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }
  ASSERT_EQ(WaitQueryable(in, total).ulids.size(), total);
  size_t over = 0, under = 0, most_over = 0;
  const bool exact = WaitFor([&] {
    auto copies = CopiesOn(st);
    over = under = 0;
    for (auto& [u, n] : copies) {
      over += n > 2;
      under += n < 2;
    }
    most_over = std::max(most_over, over);
    return copies.size() == total && over == 0 && under == 0;
  }, std::chrono::seconds(90));
  EXPECT_TRUE(exact) << over << " records on three stores, " << under << " on fewer than two";
  std::fprintf(stderr, "at most %zu records were on three stores\n", most_over);
  auto r = in->Get("/store/query");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(ParseBody(r.body).payloads.size(), total);
}

// A store whose disk is below -store.min-free-bytes (here a floor above any disk's size, so the
// real statvfs says full) gossips it: the others see "disk_full":["store"] in /cluster, it
// consumes nothing and is sent no replica, its /health is 503 naming the store disk, and the
// two other stores hold every record twice; answers are complete.
TEST_F(ClusterTest, AStoreWithAFullDiskGossipsItAndTheOtherStoresHoldEveryCopy) {
  Node* in = Add("ingest1", "ingest");
  Node* st1 = Add("store1", "store");
  Node* st2 = Add("store2", "store");
  Node* full = Add("store3", "store", {{"-store.min-free-bytes", "9000000000000000000"}});
  ASSERT_TRUE(WaitFor([&] { return in->LiveMembers() == 4 && full->LiveMembers() == 4; }, std::chrono::seconds(20)));
  auto h = full->Get("/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_NE(h.body.find("store disk: "), std::string::npos) << h.body;
  // The full store's entry (found by its address) says so; it is the only one.
  auto full_disks_of = [&](const std::string& j, Node* n) {
    auto at = j.find("\"addr\":\"127.0.0.1:" + std::to_string(n->cluster_port()) + "\"");
    if (at == std::string::npos) return std::string("?");
    at = j.find("\"disk_full\":", at);
    return at == std::string::npos ? std::string("?") : j.substr(at + 12, j.find(']', at) - at - 11);
  };
  ASSERT_TRUE(WaitFor([&] { return full_disks_of(in->Get("/cluster").body, full) == "[\"store\"]"; },
                      std::chrono::seconds(10)))
      << in->Get("/cluster").body;
  const std::string j = in->Get("/cluster").body;
  for (Node* n : {in, st1, st2}) EXPECT_EQ(full_disks_of(j, n), "[]") << n->name() << ": " << j;
  for (int i = 0; i < 3; ++i) Forward(WriteInput(dir_.path(), "full" + std::to_string(i), 4000), {in});
  Body all = WaitQueryable(in, 12000);
  EXPECT_EQ(all.ulids.size(), 12000u);
  EXPECT_EQ(all.payloads.size(), 12000u);
  auto r = in->Get("/store/query");
  EXPECT_EQ(r.status, 200) << r.Header("X-Oklog-Missing-Nodes");
  for (Node* s : {st1, st2})
    EXPECT_TRUE(WaitFor([&] { return ParseBody(s->Get("/store/_query").body).ulids.size() == 12000; },
                        std::chrono::seconds(20)))
        << s->name() << " does not hold every record";
  EXPECT_EQ(ParseBody(full->Get("/store/_query").body).ulids.size(), 0u) << "the full store took records";
  EXPECT_EQ(full->Metric("oklog_store_written_records_total"), 0);
  EXPECT_EQ(full->Metric("oklog_store_replicated_records_total"), 0);
  EXPECT_EQ(full->Metric("oklog_disk_full{dir=\"store\"}"), 1);
}

// Shedding: three ingesters whose data nobody consumes (no store yet). After -ingest.shed-after
// exactly one of them sheds (a minority: one of three), says so in /health (503) and in gossip,
// and a forwarder listing it first moves to the next ingester; the others keep taking data.
// Once stores join and consume, nobody sheds and every record is queryable once.
TEST_F(ClusterTest, OneIngesterOfThreeShedsWhileNothingIsConsumedAndStopsWhenStoresJoin) {
  const std::vector<std::pair<std::string, std::string>> shed = {{"-ingest.shed-after", "2s"}};
  for (int i = 1; i <= 3; ++i) ingest_.push_back(Add("ingest" + std::to_string(i), "ingest", shed));
  ASSERT_TRUE(WaitFor([&] { return ingest_[0]->LiveMembers() == 3 && ingest_[2]->LiveMembers() == 3; },
                      std::chrono::seconds(20)));
  for (int i = 0; i < 3; ++i) Forward(WriteInput(dir_.path(), "shed" + std::to_string(i), 1000), {ingest_[i]});
  auto shedders = [&] {
    std::vector<Node*> out;
    for (Node* n : ingest_) {
      auto h = n->Get("/health");
      if (h.status == 503 && h.body.find("shedding: the stores consumed nothing") != std::string::npos) out.push_back(n);
    }
    return out;
  };
  ASSERT_TRUE(WaitFor([&] { return !shedders().empty(); }, std::chrono::seconds(20)));
  // Two may start in the same second; one gossip round later only one is left.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  Node* shedder = nullptr;
  for (int k = 0; k < 10; ++k) {
    std::vector<Node*> now = shedders();
    ASSERT_EQ(now.size(), 1u) << "a minority of three is one";
    if (shedder == nullptr) shedder = now[0];
    EXPECT_EQ(now[0], shedder) << "the shedding place moved without a reason";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_NE(shedder, nullptr);
  EXPECT_EQ(shedder->Metric("oklog_ingest_shedding"), 1);
  Node* other = shedder == ingest_[0] ? ingest_[1] : ingest_[0];
  // The others see it in gossip, with its load.
  const std::string j = other->Get("/cluster").body;
  auto at = j.find("\"addr\":\"127.0.0.1:" + std::to_string(shedder->cluster_port()) + "\"");
  ASSERT_NE(at, std::string::npos) << j;
  EXPECT_EQ(j.find("\"shedding\":\"the stores consumed nothing", at), j.find("\"shedding\":", at)) << j;
  EXPECT_NE(j.find("\"unconsumed_bytes\":", at), std::string::npos) << j;
  // A forwarder that lists the shedder first ends up on the next ingester.
  Forward(WriteInput(dir_.path(), "moved", 1000), {shedder, other});
  EXPECT_EQ(shedder->Metric("oklog_ingest_refusing"), 1);
  EXPECT_LT(ConnectLoopback(shedder->fast_port()), 0) << "a shedding ingester took a connection";

  // Stores join: the backlogs drain, nobody sheds any more.
  store_.push_back(Add("store1", "store"));
  store_.push_back(Add("store2", "store"));
  ASSERT_TRUE(WaitFor([&] { return shedders().empty(); }, std::chrono::seconds(30)));
  for (Node* n : ingest_) EXPECT_EQ(n->Get("/health").status, 200) << n->name();
  Body all = WaitQueryable(store_[0], 4000);
  EXPECT_EQ(all.ulids.size(), 4000u);
  EXPECT_EQ(all.payloads.size(), 4000u);
  for (const auto& [payload, copies] : all.payloads) EXPECT_EQ(copies, 1u) << payload;
}

#endif  // OKLOG_CLUSTER_SLOW

}  // namespace
}  // namespace oklog
