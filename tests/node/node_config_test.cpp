// NodeConfig: the node's flags and -config file become one typed config, and every bad value is
// refused with the flag's name and the reason, before the node binds or creates anything.
#include "node/node_config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace oklog {
namespace {

namespace fs = std::filesystem;

// The message of the error LoadNodeConfig gives, or "" when it accepts the arguments.
std::string ErrorOf(Role role, const std::vector<std::string>& args) {
  Result<NodeConfig> c = LoadNodeConfig(role, args);
  return c.ok() ? "" : c.status().message();
}

TEST(RoleTest, ModeNamesRoundTripAndOthersAreNoRole) {
  for (Role r : {Role::kIngest, Role::kStore, Role::kIngestStore}) EXPECT_EQ(ParseRole(RoleName(r)), r);
  EXPECT_EQ(ParseRole("forward"), std::nullopt);
  EXPECT_EQ(ParseRole("Ingest"), std::nullopt);  // main() lower-cases the mode first
  EXPECT_EQ(ParseRole(""), std::nullopt);
}

TEST(RoleTest, GossipedRoleNamesAreTheWireStrings) {
  EXPECT_EQ(RoleNames(Role::kIngest), std::vector<std::string>{"ingest"});
  EXPECT_EQ(RoleNames(Role::kStore), std::vector<std::string>{"store"});
  EXPECT_EQ(RoleNames(Role::kIngestStore), (std::vector<std::string>{"ingest", "store"}));
  EXPECT_TRUE(HasIngest(Role::kIngestStore) && HasStore(Role::kIngestStore));
  EXPECT_FALSE(HasStore(Role::kIngest));
  EXPECT_FALSE(HasIngest(Role::kStore));
}

TEST(NodeConfigTest, DefaultsAreOkLogsAndValid) {
  Result<NodeConfig> c = LoadNodeConfig(Role::kIngestStore, {});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->role, Role::kIngestStore);
  EXPECT_EQ(c->api.HostPort(), "0.0.0.0:7650");
  EXPECT_EQ(c->fast.HostPort(), "0.0.0.0:7651");
  EXPECT_EQ(c->durable.HostPort(), "0.0.0.0:7652");
  EXPECT_EQ(c->bulk.HostPort(), "0.0.0.0:7653");
  EXPECT_EQ(c->cluster.HostPort(), "0.0.0.0:7659");
  EXPECT_EQ(c->preset, gossip::Preset::kLan);
  EXPECT_EQ(c->topic_mode, TopicMode::kStatic);
  EXPECT_EQ(c->replication_factor, 2);
  EXPECT_EQ(c->flush_age, std::chrono::milliseconds(500));
  EXPECT_EQ(c->ports_file, "");
  EXPECT_TRUE(NodeConfig{}.Validate().ok());
}

TEST(NodeConfigTest, FlagsAreConvertedToTheirTypes) {
  Result<NodeConfig> c = LoadNodeConfig(
      Role::kStore, {"-api", "127.0.0.1:0", "-cluster", "[::1]:7000", "-cluster.preset", "local", "-topic-mode",
                     "dynamic", "-peer", "a:1", "-peer", "b", "-store.segment-replication-factor", "3",
                     "-ingest.segment-flush-age", "2s", "-ports.file", "ports.txt"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->role, Role::kStore);
  EXPECT_EQ(c->api.HostPort(), "127.0.0.1:0");
  EXPECT_EQ(c->cluster.HostPort(), "[::1]:7000");
  EXPECT_EQ(c->preset, gossip::Preset::kLocal);
  EXPECT_EQ(c->topic_mode, TopicMode::kDynamic);
  EXPECT_EQ(c->peers, (std::vector<std::string>{"a:1", "b"}));
  EXPECT_EQ(c->replication_factor, 3);
  EXPECT_EQ(c->flush_age, std::chrono::seconds(2));
  EXPECT_EQ(c->ports_file, "ports.txt");
}

TEST(NodeConfigTest, ConfigFileIsReadFirstAndTheCommandLineWins) {
  TempDir dir;
  WriteFile(dir.path() + "/n.conf", "api 127.0.0.1:7001\nstore.segment-replication-factor = 3\ncluster.name x\n");
  Result<NodeConfig> c =
      LoadNodeConfig(Role::kIngestStore, {"-config", dir.path() + "/n.conf", "-store.segment-replication-factor", "1"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->api.HostPort(), "127.0.0.1:7001");
  EXPECT_EQ(c->cluster_name, "x");
  EXPECT_EQ(c->replication_factor, 1);
  // A bad value in the file names the file, the line and the flag.
  WriteFile(dir.path() + "/bad.conf", "\n# comment\nstore.segment-retain forever\n");
  const std::string bad = ErrorOf(Role::kIngestStore, {"-config=" + dir.path() + "/bad.conf"});
  EXPECT_NE(bad.find("bad.conf:3: "), std::string::npos) << bad;
  EXPECT_NE(bad.find("-store.segment-retain"), std::string::npos) << bad;
  // A validation error in the file is found as on the command line.
  WriteFile(dir.path() + "/rf.conf", "store.segment-replication-factor 0\n");
  EXPECT_NE(ErrorOf(Role::kIngestStore, {"-config", dir.path() + "/rf.conf"}).find("-store.segment-replication-factor"),
            std::string::npos);
}

TEST(NodeConfigTest, MissingConfigFileIsAnErrorNotARequestForHelp) {
  Result<NodeConfig> c = NodeConfig::Parse(Role::kIngestStore, {"-config", "/nonexistent/oklog.conf"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("-config"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("/nonexistent/oklog.conf"), std::string::npos) << c.status().message();
}

TEST(NodeConfigTest, HelpIsNotFoundAndUsageListsEveryFlagWithItsDefault) {
  EXPECT_EQ(NodeConfig::Parse(Role::kIngest, {"-h"}).status().code(), Code::kNotFound);
  const std::string usage = NodeConfig::Usage(Role::kIngest);
  EXPECT_EQ(usage.rfind("Usage of oklog ingest:\n", 0), 0u) << usage;
  for (const char* flag : {"-api \"tcp://0.0.0.0:7650\"", "-ports.file \"\"", "-store.segment-replication-factor 2",
                           "-ingest.segment-flush-age 500ms", "-config"})
    EXPECT_NE(usage.find(flag), std::string::npos) << flag;
}

// Every bad value is refused, and the message names the flag and why.
struct BadCase {
  Role role;
  std::vector<std::string> args;
  std::vector<std::string> want;  // substrings of the message
};

TEST(NodeConfigTest, EachBadValueIsRefusedNamingTheFlagAndWhy) {
  const Role is = Role::kIngestStore;
  const std::vector<BadCase> cases = {
      // Parsing: the flag set and the conversions.
      {is, {"-nosuch"}, {"flag provided but not defined: -nosuch"}},
      {is, {"-api"}, {"flag needs an argument: -api"}},
      {is, {"-store.segment-consumers", "two"}, {"-store.segment-consumers", "\"two\""}},
      {is, {"-ingest.segment-flush-age", "soon"}, {"-ingest.segment-flush-age"}},
      {is, {"-debug=maybe"}, {"-debug", "maybe"}},
      {is, {"-api", "127.0.0.1:1:2"}, {"-api: ", "bad address"}},
      {is, {"-ingest.fast", "127.0.0.1:99999"}, {"-ingest.fast: ", "bad address"}},
      {is, {"-ingest.durable", "[::1"}, {"-ingest.durable: ", "bad address"}},
      {is, {"-ingest.bulk", "host:port"}, {"-ingest.bulk: ", "bad address"}},
      {is, {"-cluster", "1.2.3.4:-1"}, {"-cluster: ", "bad address"}},
      {is, {"-ingest.topic-mode", "random"}, {"-ingest.topic-mode", "static or dynamic", "random"}},
      {is, {"-cluster.preset", "wan"}, {"-cluster.preset", "lan or local", "wan"}},
      {is, {"stray"}, {"unexpected argument: stray"}},
      // Validation: ranges.
      {is, {"-store.segment-replication-factor", "0"}, {"-store.segment-replication-factor", "at least 1", "0"}},
      {is, {"-store.segment-replication-factor", "-3"}, {"-store.segment-replication-factor", "at least 1"}},
      {is, {"-ingest.segment-flush-size", "0"}, {"-ingest.segment-flush-size", "at least 1"}},
      {is, {"-ingest.record-max-size", "0"}, {"-ingest.record-max-size", "between 1 and 67108864"}},
      {is, {"-ingest.record-max-size", "67108865"}, {"-ingest.record-max-size", "between 1 and 67108864"}},
      {is, {"-ingest.segment-flush-age", "0s"}, {"-ingest.segment-flush-age", "at least 1ms"}},
      {is, {"-ingest.segment-flush-age", "500us"}, {"-ingest.segment-flush-age", "at least 1ms"}},
      {is, {"-ingest.segment-pending-timeout", "0s"}, {"-ingest.segment-pending-timeout", "at least 1ms"}},
      {is, {"-ingest.drain-timeout", "-1s"}, {"-ingest.drain-timeout", "at least 0s"}},
      {is, {"-store.segment-consumers", "0"}, {"-store.segment-consumers", "at least 1"}},
      {is, {"-store.segment-target-size", "0"}, {"-store.segment-target-size", "at least 1"}},
      {is, {"-store.segment-target-age", "-1ms"}, {"-store.segment-target-age"}},
      {is, {"-store.segment-delay", "-1ms"}, {"-store.segment-delay"}},
      {is, {"-store.segment-buffer-size", "-1"}, {"-store.segment-buffer-size", "at least 1"}},
      {is, {"-store.segment-retain", "-1h"}, {"-store.segment-retain"}},
      {is, {"-store.segment-purge", "-1h"}, {"-store.segment-purge"}},
      {is, {"-store.max-bytes", "-1"}, {"-store.max-bytes", "-1"}},
      // Validation: names and addresses.
      {is, {"-filesystem", "virtual"}, {"-filesystem virtual is not supported"}},
      {is, {"-ingest.topic", "-bad"}, {"-ingest.topic", "\"-bad\"", "not a topic"}},
      {is, {"-ingest.topic", ""}, {"-ingest.topic"}},
      {is, {"-cluster.name", ""}, {"-cluster.name is empty"}},
      {is, {"-cluster.advertise-addr", "1.2.3.4:1:2"}, {"-cluster.advertise-addr: ", "bad address"}},
      {is, {"-peer", "127.0.0.1:7659", "-peer", "a:b:c"}, {"-peer: ", "bad address", "a:b:c"}},
      // Validation: the paths a role needs.
      {Role::kIngest, {"-ingest.path", ""}, {"-ingest.path is empty"}},
      {Role::kStore, {"-store.path", ""}, {"-store.path is empty"}},
      {is, {"-store.path", ""}, {"-store.path is empty"}},
      {is, {"-ingest.path", "d", "-store.path", "./d/"}, {"-ingest.path and -store.path", "must differ"}},
      {is, {"-ports.file", "/nonexistent/dir/ports"}, {"-ports.file", "/nonexistent/dir", "not a directory"}},
      // Validation: TLS and tokens (issue 11): the certificate and the key go together.
      {is, {"-api.tls-cert", "/x/cert.pem"}, {"-api.tls-cert and -api.tls-key go together", "only -api.tls-cert"}},
      {is, {"-api.tls-key", "/x/key.pem"}, {"-api.tls-cert and -api.tls-key go together", "only -api.tls-key"}},
      {is, {"-api.tls-client-ca", "/x/ca.pem"}, {"-api.tls-client-ca needs -api.tls-cert"}},
      {is, {"-api.tls-cert", "/x/c.pem", "-api.tls-key", "/x/k.pem"}, {"-api.tls-*", "/x/c.pem"}},
      {is, {"-ingest.tls-key", "/x/key.pem"}, {"-ingest.tls-cert and -ingest.tls-key go together"}},
      {is, {"-ingest.tls-client-ca", "/x/ca.pem"}, {"-ingest.tls-client-ca needs -ingest.tls-cert"}},
      {is, {"-api.tokens-file", "/nonexistent/tokens"}, {"-api.tokens-file", "/nonexistent/tokens"}},
      {is, {"-api.cors-origin", "ui.example.com"}, {"-api.cors-origin", "not an origin"}},
      // Validation: two listeners on one explicit port.
      {is, {"-api", "127.0.0.1:7000", "-ingest.fast", "127.0.0.1:7000"}, {"-api and -ingest.fast", "port 7000"}},
      {is, {"-ingest.durable", "0.0.0.0:7651"}, {"-ingest.fast and -ingest.durable", "port 7651"}},  // wildcard
      {is, {"-cluster", "127.0.0.1:7653"}, {"-cluster and -ingest.bulk", "port 7653"}},
      {Role::kIngest, {"-api", "0.0.0.0:7652"}, {"-api and -ingest.durable", "port 7652"}},
      {Role::kStore, {"-cluster", "127.0.0.1:7650"}, {"-api and -cluster", "port 7650"}},
  };
  for (const BadCase& c : cases) {
    std::string args;
    for (const auto& a : c.args) args += " '" + a + "'";
    const std::string err = ErrorOf(c.role, c.args);
    ASSERT_FALSE(err.empty()) << RoleName(c.role) << args << " was accepted";
    for (const std::string& w : c.want) EXPECT_NE(err.find(w), std::string::npos) << args << ": \"" << err << "\"";
    EXPECT_EQ(err.find('\n'), std::string::npos) << "one line: " << err;
  }
}

TEST(NodeConfigTest, TlsTokensAndCorsFlags) {
  TempDir dir;
  const std::string tokens = dir.path() + "/tokens";
  WriteFile(tokens, "read 0123456789abcdef0123\n");
  Result<NodeConfig> c = LoadNodeConfig(Role::kIngestStore, {"-api.tokens-file", tokens, "-api.cors-origin",
                                                             "https://ui.example.com/, http://localhost:3000"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->api_tokens_file, tokens);
  EXPECT_EQ(c->api_cors_origins, (std::vector<std::string>{"https://ui.example.com", "http://localhost:3000"}));
  WriteFile(tokens, "admin 0123456789abcdef0123\n");
  EXPECT_NE(ErrorOf(Role::kIngestStore, {"-api.tokens-file", tokens}).find("line 1"), std::string::npos);
}

TEST(NodeConfigTest, WhatTheRoleDoesNotUseIsNotChecked) {
  // A store binds no ingest listener and keeps no ingest log; an ingester keeps no store.
  EXPECT_EQ(ErrorOf(Role::kStore, {"-ingest.fast", "0.0.0.0:7650", "-ingest.path", ""}), "");
  EXPECT_EQ(ErrorOf(Role::kIngest, {"-store.path", ""}), "");
  EXPECT_EQ(ErrorOf(Role::kIngest, {"-ingest.path", "d", "-store.path", "d"}), "");
}

TEST(NodeConfigTest, PortZeroAndDistinctHostsNeverConflict) {
  EXPECT_EQ(ErrorOf(Role::kIngestStore, {"-api", "127.0.0.1:0", "-ingest.fast", "127.0.0.1:0", "-ingest.durable",
                                         "127.0.0.1:0", "-ingest.bulk", "127.0.0.1:0", "-cluster", "127.0.0.1:0"}),
            "");
  EXPECT_EQ(ErrorOf(Role::kIngestStore, {"-api", "127.0.0.1:7000", "-ingest.fast", "127.0.0.2:7000"}), "");
}

TEST(NodeConfigTest, ExistingPathMustBeADirectory) {
  TempDir dir;
  WriteFile(dir.path() + "/file", "x");
  EXPECT_NE(ErrorOf(Role::kIngest, {"-ingest.path", dir.path() + "/file"}).find("is not a directory"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Role::kStore, {"-store.path", dir.path() + "/file"}).find("-store.path"), std::string::npos);
  // A directory that exists, and one that does not yet: both fine, and nothing is created.
  EXPECT_EQ(ErrorOf(Role::kIngestStore, {"-ingest.path", dir.path(), "-store.path", dir.path() + "/new/store"}), "");
  EXPECT_FALSE(fs::exists(dir.path() + "/new"));
}

}  // namespace
}  // namespace oklog
