// TLS at the edges and API tokens (issue 11), with real processes: a node started with
// -api.tls-* (with and without a client CA), -api.tokens-file and -api.cors-origin, reached by
// curl and by `oklog query` / `oklog stream` with -tls-* and -token; a node given half a
// certificate refuses to start; SIGHUP rereads the tokens.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>

#include "test_util.h"
#include "tls_test_certs.h"

namespace oklog {
namespace {

namespace fs = std::filesystem;
using testing::TestPki;

constexpr const char* kRead = "read-token-0123456789abcdef";
constexpr const char* kWrite = "write-token-0123456789abcdef";

class TlsNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = TestPki::Make(dir_.path());
    tokens_ = dir_.path() + "/tokens";
    WriteFile(tokens_, std::string("# test tokens\nread ") + kRead + "\nwrite " + kWrite + "\n");
    fs::permissions(tokens_, fs::perms::owner_read | fs::perms::owner_write);
  }

  // Starts an ingeststore node on port 0 with these extra flags; false (with the reason
  // recorded) when it does not come up.
  void Start(const std::vector<std::string>& extra) {
    ports_file_ = dir_.path() + "/node.ports";
    fs::remove(ports_file_);
    std::vector<std::string> args = {OklogBinary(), "ingeststore", "-api", "127.0.0.1:0", "-ingest.fast", "127.0.0.1:0",
                                     "-ingest.durable", "127.0.0.1:0", "-ingest.bulk", "127.0.0.1:0", "-cluster",
                                     "127.0.0.1:0", "-ports.file", ports_file_, "-ingest.path",
                                     dir_.path() + "/data/ingest", "-store.path", dir_.path() + "/data/store"};
    args.insert(args.end(), extra.begin(), extra.end());
    node_ = std::make_unique<Process>(args, dir_.path(), "node");
    auto ports = WaitForPorts(ports_file_, [&] { return node_->running(); });
    ASSERT_TRUE(node_->running()) << node_->Stderr();
    api_ = ports["api"];
    fast_ = ports["ingest.fast"];
    ASSERT_NE(api_, 0);
  }
  void TearDown() override {
    if (node_ != nullptr && node_->running()) {
      node_->Signal(SIGTERM);
      EXPECT_EQ(node_->Wait(std::chrono::seconds(30)), 0) << node_->Stderr();
    }
  }
  std::string Https(const std::string& path) { return "https://127.0.0.1:" + std::to_string(api_) + path; }
  std::string ClientCert() { return " --cert " + pki_.client_cert + " --key " + pki_.client_key + " "; }
  // curl's HTTP status ("000" when no response, e.g. a failed handshake); *rc its exit status.
  std::string CurlStatus(const std::string& args, int* rc = nullptr) {
    return Shell("curl -s -o /dev/null -w '%{http_code}' --max-time 20 --cacert " + pki_.ca + " " + args +
                     " 2>/dev/null",
                 rc);
  }
  std::string Oklog(const std::string& args, int* rc) {
    return Shell(OklogBinary() + " " + args + " 2>" + dir_.path() + "/cli.err", rc);
  }
  std::string CliErr() { return ReadFile(dir_.path() + "/cli.err"); }
  std::string TlsFlags(bool with_cert) {
    std::string f = " -tls-ca " + pki_.ca;
    if (with_cert) f += " -tls-cert " + pki_.client_cert + " -tls-key " + pki_.client_key;
    return f;
  }

  TempDir dir_;
  TestPki pki_;
  std::string tokens_, ports_file_;
  std::unique_ptr<Process> node_;
  uint16_t api_ = 0, fast_ = 0;
};

TEST_F(TlsNodeTest, ClientCertificatesTokensAndCorsThroughCurlAndTheCli) {
  Start({"-api.tls-cert", pki_.server_cert, "-api.tls-key", pki_.server_key, "-api.tls-client-ca", pki_.ca,
         "-api.tokens-file", tokens_, "-api.cors-origin", "https://ui.example.com"});
  const std::string read = " -H 'Authorization: Bearer " + std::string(kRead) + "' ";
  const std::string write = " -H 'Authorization: Bearer " + std::string(kWrite) + "' ";

  // /health is open to a client with a certificate; without one the handshake fails.
  ASSERT_TRUE(WaitFor([&] { return CurlStatus(ClientCert() + " " + Https("/health")) == "200"; },
                      std::chrono::seconds(20)));
  int rc = 0;
  EXPECT_EQ(CurlStatus(Https("/health"), &rc), "000");
  EXPECT_NE(rc, 0);
  EXPECT_EQ(CurlStatus("--cert " + pki_.other_client_cert + " --key " + pki_.other_client_key + " " +
                       Https("/health")),
            "000");
  EXPECT_EQ(CurlStatus("http://127.0.0.1:" + std::to_string(api_) + "/health"), "000");  // plain HTTP: no answer

  // Tokens: none → 401 with a Bearer challenge; read → 200 on queries; read on a write route → 403.
  std::string head = Shell("curl -s -i --max-time 20 --cacert " + pki_.ca + ClientCert() + " '" +
                           Https("/store/query?from=1h") + "'");
  EXPECT_TRUE(head.starts_with("HTTP/1.1 401")) << head;
  EXPECT_NE(head.find("WWW-Authenticate: Bearer realm=\"oklog\""), std::string::npos) << head;
  EXPECT_EQ(CurlStatus(ClientCert() + " -H 'Authorization: Bearer wrong-token-0123456789' '" +
                       Https("/store/query?from=1h") + "'"),
            "401");
  EXPECT_EQ(CurlStatus(ClientCert() + read + "'" + Https("/store/query?from=1h") + "'"), "200");
  EXPECT_EQ(CurlStatus(ClientCert() + read + "-I '" + Https("/store/query?from=1h") + "'"), "200");
  EXPECT_EQ(CurlStatus(ClientCert() + read + Https("/cluster")), "200");
  EXPECT_EQ(CurlStatus(ClientCert() + read + Https("/metrics")), "200");
  EXPECT_EQ(CurlStatus(ClientCert() + Https("/metrics")), "401");
  EXPECT_EQ(CurlStatus(ClientCert() + read + "-X POST '" + Https("/store/query?from=1h") + "'"), "403");
  EXPECT_EQ(CurlStatus(ClientCert() + write + "'" + Https("/store/query?from=1h") + "'"), "403");
  EXPECT_EQ(CurlStatus(ClientCert() + write + "-X POST '" + Https("/store/query?from=1h") + "'"), "405");

  // CORS: the listed origin is echoed, another is not; preflights likewise.
  std::string listed = Shell("curl -s -i --max-time 20 --cacert " + pki_.ca + ClientCert() + read +
                             "-H 'Origin: https://ui.example.com' " + Https("/cluster"));
  EXPECT_NE(listed.find("Access-Control-Allow-Origin: https://ui.example.com\r\n"), std::string::npos) << listed;
  EXPECT_NE(listed.find("Vary: Origin\r\n"), std::string::npos);
  std::string other = Shell("curl -s -i --max-time 20 --cacert " + pki_.ca + ClientCert() + read +
                            "-H 'Origin: https://evil.example.com' " + Https("/cluster"));
  EXPECT_EQ(other.find("Access-Control-Allow-Origin"), std::string::npos) << other;
  const std::string preflight = "-X OPTIONS -H 'Access-Control-Request-Method: GET' "
                                "-H 'Access-Control-Request-Headers: authorization' ";
  EXPECT_EQ(CurlStatus(ClientCert() + preflight + "-H 'Origin: https://ui.example.com' " + Https("/store/query")),
            "204");
  EXPECT_EQ(CurlStatus(ClientCert() + preflight + "-H 'Origin: https://evil.example.com' " + Https("/store/query")),
            "403");

  // Records forwarded (plain ingest), then read back by `oklog query` over TLS with a token.
  WriteFile(dir_.path() + "/in.txt", "tls line one\ntls line two\n");
  Process fwd({OklogBinary(), "forward", "127.0.0.1:" + std::to_string(fast_)}, dir_.path(), "forward",
              dir_.path() + "/in.txt");
  ASSERT_EQ(fwd.Wait(std::chrono::seconds(30)), 0) << fwd.Stderr();
  const std::string store = " -store 127.0.0.1:" + std::to_string(api_);
  std::string out;
  EXPECT_TRUE(WaitFor([&] {
    out = Oklog("query" + store + TlsFlags(true) + " -token " + kRead + " -from 1h -q 'tls line'", &rc);
    return rc == 0 && out == "tls line one\ntls line two\n";
  }, std::chrono::seconds(20))) << rc << " " << out << CliErr();
  // The same with https:// spelled out and the token from $OKLOG_TOKEN.
  out = Shell(std::string("OKLOG_TOKEN=") + kRead + " " + OklogBinary() + " query -store https://127.0.0.1:" +
                  std::to_string(api_) + TlsFlags(true) + " -from 1h -q 'tls line' 2>/dev/null",
              &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "tls line one\ntls line two\n");
  // Without a client certificate: the handshake fails, exit 1 with TLS's reason.
  out = Oklog("query" + store + TlsFlags(false) + " -token " + kRead + " -from 1h", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(CliErr().find("certificate"), std::string::npos) << CliErr();
  // Without a token: HTTP 401.
  out = Oklog("query" + store + TlsFlags(true) + " -from 1h", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(CliErr().find("HTTP 401"), std::string::npos) << CliErr();
  // A server the CLI's CA did not sign is refused.
  out = Oklog("query" + store + " -tls-ca " + pki_.other_ca + " -tls-cert " + pki_.client_cert + " -tls-key " +
                  pki_.client_key + " -token " + kRead,
              &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(CliErr().find("certificate"), std::string::npos) << CliErr();
  // oklog stream: refused without a token, runs with one (until killed).
  out = Oklog("stream" + store + TlsFlags(true), &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(CliErr().find("HTTP 401"), std::string::npos) << CliErr();
  Process stream({OklogBinary(), "stream", "-store", "127.0.0.1:" + std::to_string(api_), "-tls-ca", pki_.ca,
                  "-tls-cert", pki_.client_cert, "-tls-key", pki_.client_key, "-token", kRead, "-q", "streamed"},
                 dir_.path(), "stream");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  WriteFile(dir_.path() + "/in2.txt", "streamed over tls\n");
  EXPECT_TRUE(WaitFor([&] {
    Process f({OklogBinary(), "forward", "127.0.0.1:" + std::to_string(fast_)}, dir_.path(), "forward2",
              dir_.path() + "/in2.txt");
    f.Wait(std::chrono::seconds(10));
    return WaitFor([&] { return stream.Stdout().find("streamed over tls\n") != std::string::npos; },
                   std::chrono::seconds(2));
  }, std::chrono::seconds(20))) << stream.Stderr();
  EXPECT_TRUE(stream.running());
  stream.Signal(SIGTERM);
  stream.Wait(std::chrono::seconds(5));

  // Failed handshakes were counted per listener.
  std::string metrics = Shell("curl -s --max-time 20 --cacert " + pki_.ca + ClientCert() + read + Https("/metrics"));
  EXPECT_GE(SeriesValue(metrics, "oklog_tls_handshake_failures_total{listener=\"api\"}"), 3) << metrics;
}

TEST_F(TlsNodeTest, TlsWithoutClientCertificatesAndTokensReloadOnSighup) {
  Start({"-api.tls-cert", pki_.server_cert, "-api.tls-key", pki_.server_key, "-api.tokens-file", tokens_});
  ASSERT_TRUE(WaitFor([&] { return CurlStatus(Https("/health")) == "200"; }, std::chrono::seconds(20)));
  const std::string read = " -H 'Authorization: Bearer " + std::string(kRead) + "' ";
  EXPECT_EQ(CurlStatus(read + "'" + Https("/store/query?from=1h") + "'"), "200");  // no client certificate needed
  int rc = 0;
  Oklog("query -store 127.0.0.1:" + std::to_string(api_) + " -tls-ca " + pki_.ca + " -token " + kRead, &rc);
  EXPECT_EQ(rc, 0) << CliErr();
  // In a CORS-less node no response carries Access-Control headers.
  std::string r = Shell("curl -s -i --max-time 20 --cacert " + pki_.ca + read + "-H 'Origin: https://x.example' " +
                        Https("/cluster"));
  EXPECT_EQ(r.find("Access-Control-"), std::string::npos) << r;

  // SIGHUP: a new file replaces the tokens; one that does not parse keeps them.
  const std::string fresh = "fresh-token-0123456789abcdef";
  WriteFile(tokens_, "read " + fresh + "\n");
  node_->Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] {
    return CurlStatus(" -H 'Authorization: Bearer " + fresh + "' " + Https("/cluster")) == "200";
  }, std::chrono::seconds(10)));
  EXPECT_EQ(CurlStatus(read + Https("/cluster")), "401");
  WriteFile(tokens_, "nonsense\n");
  node_->Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return node_->Stderr().find("keeping the API tokens in use") != std::string::npos; },
                      std::chrono::seconds(10)))
      << node_->Stderr();
  EXPECT_EQ(CurlStatus(" -H 'Authorization: Bearer " + fresh + "' " + Https("/cluster")), "200");
}

TEST_F(TlsNodeTest, IngestOverTlsWithClientCertificatesThroughForwardAndBulk) {
  Start({"-ingest.tls-cert", pki_.server_cert, "-ingest.tls-key", pki_.server_key, "-ingest.tls-client-ca", pki_.ca});
  const std::string api = "http://127.0.0.1:" + std::to_string(api_);
  ASSERT_TRUE(WaitFor([&] { return Shell("curl -s --max-time 5 " + api + "/health").starts_with("OK"); },
                      std::chrono::seconds(20)));
  auto ports = ReadPortsFile(ports_file_);
  // Fast and durable ports, each through `oklog forward -tls-*`.
  WriteFile(dir_.path() + "/fast.txt", "over tls fast 1\nover tls fast 2\n");
  WriteFile(dir_.path() + "/durable.txt", "over tls durable\n");
  for (auto [file, port] : {std::pair<std::string, uint16_t>{"fast.txt", ports["ingest.fast"]},
                            {"durable.txt", ports["ingest.durable"]}}) {
    Process f({OklogBinary(), "forward", "-tls-ca", pki_.ca, "-tls-cert", pki_.client_cert, "-tls-key",
               pki_.client_key, "localhost:" + std::to_string(port)},
              dir_.path(), "forward_" + file, dir_.path() + "/" + file);
    EXPECT_EQ(f.Wait(std::chrono::seconds(30)), 0) << f.Stderr();
  }
  int rc = 0;
  std::string out;
  EXPECT_TRUE(WaitFor([&] {
    out = Oklog("query -store 127.0.0.1:" + std::to_string(api_) + " -from 1h -q 'over tls'", &rc);
    return out == "over tls fast 1\nover tls fast 2\nover tls durable\n";
  }, std::chrono::seconds(20))) << out << CliErr();

  // Without a client certificate the forwarder keeps retrying (as with an unreachable ingester)
  // and delivers nothing; a plain sender's bytes are never stored.
  WriteFile(dir_.path() + "/refused.txt", "refused line\n");
  Process anon({OklogBinary(), "forward", "-tls-ca", pki_.ca, "127.0.0.1:" + std::to_string(ports["ingest.fast"])},
               dir_.path(), "forward_anon", dir_.path() + "/refused.txt");
  EXPECT_TRUE(SendAndDrain(ports["ingest.fast"], "plain refused line\n"));
  EXPECT_TRUE(WaitFor([&] { return anon.Stderr().find("certificate") != std::string::npos; },
                      std::chrono::seconds(10)))
      << anon.Stderr();
  EXPECT_TRUE(anon.running());
  anon.Signal(SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  out = Oklog("query -store 127.0.0.1:" + std::to_string(api_) + " -from 1h -q refused", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "");
  std::string metrics = Shell("curl -s --max-time 5 " + api + "/metrics");
  EXPECT_GE(SeriesValue(metrics, "oklog_tls_handshake_failures_total{listener=\"ingest\"}"), 2) << metrics;
  // -bulk over TLS: whole segments (one larger than many records) acknowledged once stored.
  std::string bulk_in;
  for (int i = 0; i < 20000; ++i) bulk_in += "bulk over tls " + std::to_string(i) + " " + std::string(100, 'b') + "\n";
  WriteFile(dir_.path() + "/bulk.txt", bulk_in);
  Process bulk({OklogBinary(), "forward", "-bulk", "-bulk.segment-size", "1048576", "-tls-ca", pki_.ca, "-tls-cert",
                pki_.client_cert, "-tls-key", pki_.client_key, "localhost:" + std::to_string(ports["ingest.bulk"])},
               dir_.path(), "bulk", dir_.path() + "/bulk.txt");
  EXPECT_EQ(bulk.Wait(std::chrono::seconds(60)), 0) << bulk.Stderr();
  EXPECT_TRUE(WaitFor([&] {
    out = Oklog("query -store 127.0.0.1:" + std::to_string(api_) + " -from 1h -q 'bulk over tls'", &rc);
    return out == bulk_in;
  }, std::chrono::seconds(20))) << out.size() << " of " << bulk_in.size() << " bytes " << CliErr();
}

// The half-close an ingester gives an idle (or refused) connection, over TLS: close_notify
// then FIN; the forwarder hands over and loses nothing.
TEST_F(TlsNodeTest, IdleTlsIngestConnectionIsLetGoAndTheForwarderLosesNothing) {
  Start({"-ingest.tls-cert", pki_.server_cert, "-ingest.tls-key", pki_.server_key, "-ingest.idle-timeout", "1s"});
  const std::string fifo = dir_.path() + "/in.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Process f({OklogBinary(), "forward", "-tls-ca", pki_.ca, "127.0.0.1:" + std::to_string(fast_)}, dir_.path(), "fwd",
            fifo);
  int w = ::open(fifo.c_str(), O_WRONLY);
  ASSERT_GE(w, 0);
  auto put = [&](const std::string& line) {
    ASSERT_EQ(::write(w, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  };
  put("tls before the idle close\n");
  const std::string metrics = "curl -s --max-time 5 http://127.0.0.1:" + std::to_string(api_) + "/metrics";
  ASSERT_TRUE(WaitFor([&] {
    return SeriesValue(Shell(metrics), "oklog_ingest_connections_closed_total{modality=\"fast\",reason=\"idle\"}") >= 1;
  }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  put("tls after the idle close\n");
  ::close(w);
  EXPECT_EQ(f.Wait(std::chrono::seconds(30)), 0) << f.Stderr();
  int rc = 0;
  std::string out;
  EXPECT_TRUE(WaitFor([&] {
    out = Oklog("query -store 127.0.0.1:" + std::to_string(api_) + " -from 1h -q 'idle close'", &rc);
    return out == "tls before the idle close\ntls after the idle close\n";
  }, std::chrono::seconds(20))) << out << CliErr() << f.Stderr();
}

TEST_F(TlsNodeTest, HalfACertificateOrAnUnreadableOneRefusesToStart) {
  for (const std::vector<std::string>& flags : std::vector<std::vector<std::string>>{
           {"-api.tls-cert", pki_.server_cert},
           {"-api.tls-key", pki_.server_key},
           {"-api.tls-client-ca", pki_.ca},
           {"-api.tls-cert", pki_.server_cert, "-api.tls-key", pki_.client_key},
           {"-api.tls-cert", dir_.path() + "/missing.pem", "-api.tls-key", pki_.server_key}}) {
    std::string args;
    for (const auto& f : flags) args += " " + f;
    int rc = 0;
    std::string out = Shell(OklogBinary() + " ingeststore -api 127.0.0.1:0 -cluster 127.0.0.1:0" + args + " 2>&1", &rc);
    EXPECT_EQ(rc, 1) << args << ": " << out;
    EXPECT_NE(out.find("-api.tls-"), std::string::npos) << args << ": " << out;
  }
}

}  // namespace
}  // namespace oklog
