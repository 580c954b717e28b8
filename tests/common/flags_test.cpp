#include "common/flags.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace oklog {
namespace {

struct Fixture {
  std::string api = "tcp://0.0.0.0:7650";
  bool debug = false;
  int64_t size = 16;
  Nanos age = std::chrono::seconds(3);
  std::vector<std::string> peers;
  FlagSet fs{"ingeststore"};
  Fixture() {
    fs.String("api", &api, "API listen address");
    fs.Bool("debug", &debug, "debug logging");
    fs.Int("ingest.segment-flush-size", &size, "flush size");
    fs.Duration("ingest.segment-flush-age", &age, "flush age");
    fs.StringList("peer", &peers, "peer");
    fs.Alias("topic.size", "ingest.segment-flush-size");
  }
};

TEST(FlagsTest, GoSpellings) {
  Fixture f;
  auto rest = f.fs.Parse({"-api", "127.0.0.1:1", "--debug", "-ingest.segment-flush-size=99",
                          "-ingest.segment-flush-age", "250ms", "-peer", "a", "-peer=b", "pos1", "pos2"});
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(f.api, "127.0.0.1:1");
  EXPECT_TRUE(f.debug);
  EXPECT_EQ(f.size, 99);
  EXPECT_EQ(f.age, std::chrono::milliseconds(250));
  EXPECT_EQ(f.peers, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(rest.value(), (std::vector<std::string>{"pos1", "pos2"}));
  EXPECT_TRUE(f.fs.WasSet("api"));
}

TEST(FlagsTest, BoolNeedsEqualsToTurnOff) {
  Fixture f;
  f.debug = true;
  ASSERT_TRUE(f.fs.Parse({"-debug=false"}).ok());
  EXPECT_FALSE(f.debug);
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  Fixture f;
  auto r = f.fs.Parse({"-nope"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("-nope"), std::string::npos);
  EXPECT_FALSE(f.fs.Parse({"-ingest.segment-flush-age", "soon"}).ok());
  EXPECT_FALSE(f.fs.Parse({"-ingest.segment-flush-size", "12x"}).ok());
  EXPECT_FALSE(f.fs.Parse({"-api"}).ok());
  EXPECT_EQ(f.fs.Parse({"-h"}).status().code(), Code::kNotFound);
}

TEST(FlagsTest, UsageListsEveryFlagWithDefault) {
  Fixture f;
  std::string u = f.fs.Usage();
  EXPECT_NE(u.find("-api \"tcp://0.0.0.0:7650\""), std::string::npos);
  EXPECT_NE(u.find("-ingest.segment-flush-age 3s"), std::string::npos);
  EXPECT_NE(u.find("-debug false"), std::string::npos);
}

TEST(FlagsTest, ConfigFileThenCommandLineWins) {
  Fixture f;
  std::string path = ::testing::TempDir() + "/oklog_flags.conf";
  {
    std::ofstream out(path);
    out << "# comment\napi = tcp://1.2.3.4:5\n-debug\npeer x\ningest.segment-flush-size 7\n";
  }
  ASSERT_TRUE(f.fs.ParseConfigFile(path).ok());
  ASSERT_TRUE(f.fs.Parse({"-ingest.segment-flush-size", "8"}).ok());
  EXPECT_EQ(f.api, "tcp://1.2.3.4:5");
  EXPECT_TRUE(f.debug);
  EXPECT_EQ(f.size, 8);
  EXPECT_EQ(f.peers, std::vector<std::string>{"x"});
  std::remove(path.c_str());
}

// Found by tests/fuzz/fuzz_flags: a config file line of dashes only ("-", "--") threw
// std::out_of_range out of ParseConfigFile (the node died in std::terminate at start-up).
TEST(FlagsTest, ConfigFileLineOfDashesIsAnUnknownFlag) {
  for (const char* line : {"-", "--", "--- = x"}) {
    Fixture f;
    std::string path = ::testing::TempDir() + "/oklog_flags_dashes.conf";
    {
      std::ofstream out(path);
      out << "debug\n" << line << "\n";
    }
    Status s = f.fs.ParseConfigFile(path);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << line;
    EXPECT_NE(s.message().find(":2: flag provided but not defined"), std::string::npos) << s.message();
    std::remove(path.c_str());
  }
}

}  // namespace
}  // namespace oklog
