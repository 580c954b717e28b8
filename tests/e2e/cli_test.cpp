// The command-line tools as users run them: failover, -prefix, testsvc, and -h for every mode.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <thread>

#include "test_util.h"

namespace oklog {
namespace {

// A one-shot line sink on 127.0.0.1: accepts one connection and keeps what it reads.
class Sink {
 public:
  Sink() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 4);
    thread_ = std::thread([this] {
      int c = ::accept(fd_, nullptr, nullptr);
      char buf[65536];
      ssize_t n;
      while ((n = ::recv(c, buf, sizeof buf, 0)) > 0) data_.append(buf, static_cast<size_t>(n));
      ::close(c);
    });
  }
  ~Sink() {
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  std::string Wait() {
    thread_.join();
    return data_;
  }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_;
  std::thread thread_;
  std::string data_;
};

TEST(CliTest, ForwardFailsOverFromADeadTargetAndPrefixes) {
  TempDir dir;
  Sink sink;
  // A port that refuses connections: bound but never listening, so no other process can take it
  // while the test runs (a closed one could be).
  int dead_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(dead_fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(dead_fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const uint16_t dead = ntohs(a.sin_port);
  WriteFile(dir.path() + "/in.txt", "one 100%s\ntwo\nlast without newline");
  // The sink is a foreign ingester (it never answers the acknowledgement request): -plain sends
  // the lines alone.
  Process f({OklogBinary(), "forward", "-plain", "-prefix", "host=a", "-prefix", "app=b",
             "127.0.0.1:" + std::to_string(dead), "127.0.0.1:" + std::to_string(sink.port())},
            dir.path(), "forward", dir.path() + "/in.txt");
  EXPECT_EQ(f.Wait(std::chrono::seconds(30)), 0) << f.Stderr();
  EXPECT_EQ(sink.Wait(), "host=a app=b one 100%s\nhost=a app=b two\nhost=a app=b last without newline\n");
  // Without -plain a connection starts with the request (segments/ingest_acks.h), which an
  // oklog ingester strips; a sink that never answers it is taken for a fast port that read
  // everything once it closes.
  Sink sink2;
  Process g({OklogBinary(), "forward", "127.0.0.1:" + std::to_string(sink2.port())}, dir.path(), "forward2",
            dir.path() + "/in.txt");
  EXPECT_EQ(g.Wait(std::chrono::seconds(30)), 0) << g.Stderr();
  EXPECT_EQ(sink2.Wait(), "oklog-acks 1\none 100%s\ntwo\nlast without newline\n");
  Process both({OklogBinary(), "forward", "-plain", "-durable", "127.0.0.1:1"}, dir.path(), "both");
  EXPECT_EQ(both.Wait(std::chrono::seconds(10)), 1);
  EXPECT_NE(both.Stderr().find("-plain cannot be combined"), std::string::npos) << both.Stderr();
  ::close(dead_fd);
}

TEST(CliTest, ForwardNeedsATargetAndRejectsBadAddresses) {
  TempDir dir;
  Process none({OklogBinary(), "forward"}, dir.path(), "none");
  EXPECT_EQ(none.Wait(std::chrono::seconds(10)), 1);
  Process bad({OklogBinary(), "forward", "host:99999"}, dir.path(), "bad");
  EXPECT_EQ(bad.Wait(std::chrono::seconds(10)), 1);
  EXPECT_NE(bad.Stderr().find("bad address"), std::string::npos);
}

TEST(CliTest, TestsvcEmitsOkLogShapedLines) {
  std::string out = Shell("timeout 10 " + OklogBinary() + " testsvc -id svc1 -size 80 -rate 200 | head -n 5");
  std::istringstream in(out);
  std::string line;
  int n = 0;
  std::regex shape(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} svc1 \d{9} [0-9A-Z ]+$)");
  while (std::getline(in, line)) {
    ++n;
    EXPECT_TRUE(std::regex_match(line, shape)) << line;
    EXPECT_EQ(line.size() + 1, 80u) << line;
  }
  EXPECT_EQ(n, 5);
}

TEST(CliTest, EveryModePrintsItsFlagsWithDefaults) {
  std::string ingeststore = Shell(OklogBinary() + " ingeststore -h 2>&1");
  for (const char* flag :
       {"-api \"tcp://0.0.0.0:7650\"", "-ingest.fast \"tcp://0.0.0.0:7651\"", "-ingest.durable \"tcp://0.0.0.0:7652\"",
        "-ingest.bulk \"tcp://0.0.0.0:7653\"", "-cluster \"tcp://0.0.0.0:7659\"", "-cluster.advertise-addr",
        "-ingest.path \"data/ingest\"", "-ingest.segment-flush-size 16777216", "-ingest.segment-flush-age",
        "-ingest.segment-pending-timeout 1m0s", "-ingest.topic-mode \"static\"", "-ingest.topic \"default\"",
        "-ingest.record-max-size 1048576", "-store.path \"data/store\"", "-store.segment-consumers 1",
        "-store.segment-target-size 134217728", "-store.segment-target-age", "-store.segment-delay 100ms",
        "-store.segment-buffer-size 1048576", "-store.segment-replication-factor 2", "-store.segment-retain 168h0m0s",
        "-store.segment-purge 24h0m0s", "-ui.local false", "-filesystem \"real\"", "-peer", "-debug false", "-config"})
    EXPECT_NE(ingeststore.find(flag), std::string::npos) << flag;
  std::string query = Shell(OklogBinary() + " query -h 2>&1");
  for (const char* flag : {"-store \"localhost:7650\"", "-from \"1h\"", "-to \"now\"", "-q \"\"", "-regex false",
                           "-stats false", "-ulid false", "-topic false", "-time false", "-v false", "-nocopy false"})
    EXPECT_NE(query.find(flag), std::string::npos) << flag;
  std::string forward = Shell(OklogBinary() + " forward -h 2>&1");
  EXPECT_NE(forward.find("-prefix"), std::string::npos);
  std::string testsvc = Shell(OklogBinary() + " testsvc -h 2>&1");
  for (const char* flag : {"-id \"foo\"", "-size 512", "-rate 5"}) EXPECT_NE(testsvc.find(flag), std::string::npos);
  int rc = 0;
  Shell(OklogBinary() + " nosuchmode 2>/dev/null", &rc);
  EXPECT_EQ(rc, 1);
}

TEST(CliTest, NodeRejectsBadFlagsWithAMessage) {
  int rc = 0;
  std::string out = Shell(OklogBinary() + " ingeststore -ingest.segment-flush-age soon 2>&1", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("-ingest.segment-flush-age"), std::string::npos) << out;
  out = Shell(OklogBinary() + " ingeststore -api 127.0.0.1:1:2 2>&1", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("bad address"), std::string::npos) << out;
  out = Shell(OklogBinary() + " ingeststore -ingest.topic '-bad' 2>&1", &rc);
  EXPECT_EQ(rc, 1);
}

// Every bad flag value, whatever the check that finds it, ends the node before it binds a port or
// creates a directory: exit 1 and one line on stderr naming the flag.
TEST(CliTest, NodeRefusesABadConfigBeforeItBindsOrCreatesAnything) {
  TempDir dir;
  const std::string in = dir.path() + "/ingest", st = dir.path() + "/store";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"ingeststore", "-store.segment-replication-factor", "0"}, "-store.segment-replication-factor"},
      {{"ingeststore", "-ingest.topic-mode", "random"}, "-ingest.topic-mode"},
      {{"ingest", "-cluster.preset", "wan"}, "-cluster.preset"},
      {{"store", "-store.max-bytes", "-1"}, "-store.max-bytes"},
      {{"ingeststore", "-api", "127.0.0.1:1:2"}, "-api: bad address"},
      {{"ingeststore", "-api", "127.0.0.1:7000", "-ingest.fast", "127.0.0.1:7000"}, "-api and -ingest.fast"},
      {{"ingest", "-ingest.segment-flush-age", "0s"}, "-ingest.segment-flush-age"},
      {{"ingeststore", "-config", dir.path() + "/missing.conf"}, "-config"},
      {{"ingeststore", "-ports.file", dir.path() + "/no/such/dir/ports"}, "-ports.file"},
  };
  int n = 0;
  for (const auto& [flags, want] : cases) {
    std::vector<std::string> argv = {OklogBinary()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(), {"-ingest.path", in, "-store.path", st});
    Process p(argv, dir.path(), "bad" + std::to_string(++n));
    EXPECT_EQ(p.Wait(std::chrono::seconds(10)), 1) << want;
    const std::string err = p.Stderr();
    EXPECT_NE(err.find(want), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;
    EXPECT_EQ(p.Stdout(), "");
    EXPECT_FALSE(std::filesystem::exists(in)) << want;
    EXPECT_FALSE(std::filesystem::exists(st)) << want;
  }
}

}  // namespace
}  // namespace oklog
