// Command lines and config files (common/flags.h) and a node's whole configuration
// (node/node_config.h: addresses, sizes, durations, presets, topics). The input is split at
// NUL bytes into arguments; the first byte picks the role.
//   FlagSet::Parse ok  =>  an int or duration flag, given again as the value it parsed to
//                          (FormatDuration for durations), parses to the same value
//   NodeConfig::Parse and Validate: a Status, never a crash (arguments naming -config or a key
//   file are left out: the target reads no file but its own config file, below)
//   ParseConfigFile of the input as a file: the same
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "fuzz_check.h"
#include "node/node_config.h"

using namespace oklog;

namespace {

struct Values {
  std::string s = "x";
  bool b = false;
  int64_t n = 7;
  Nanos d = std::chrono::seconds(1);
  std::vector<std::string> list;
};

void Bind(FlagSet* fs, Values* v) {
  fs->String("s", &v->s, "a string");
  fs->Bool("b", &v->b, "a bool");
  fs->Int("n", &v->n, "an int");
  fs->Duration("d", &v->d, "a duration");
  fs->StringList("l", &v->list, "a list");
  fs->Alias("alias", "n");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t role = in.Byte();
  std::vector<std::string> args;
  std::string file;
  while (!in.empty() && args.size() < 24) {
    std::string a(in.Until('\0'));
    file += a + "\n";
    args.push_back(std::move(a));
  }

  {
    Values v;
    FlagSet fs("fuzz");
    Bind(&fs, &v);
    auto parsed = fs.Parse(args);
    (void)fs.Usage();
    if (parsed.ok()) {
      Values w;
      FlagSet again("fuzz");
      Bind(&again, &w);
      auto r = again.Parse({"-n=" + std::to_string(v.n), "-d", FormatDuration(v.d)});
      FUZZ_CHECK(r.ok());
      FUZZ_CHECK(w.n == v.n);
      FUZZ_CHECK(w.d == v.d);
    }
  }

  std::vector<std::string> node_args;
  for (const auto& a : args)
    if (a.find("config") == std::string::npos && a.find("key") == std::string::npos) node_args.push_back(a);
  auto cfg = NodeConfig::Parse(static_cast<Role>(role % 3), node_args);
  if (cfg.ok()) (void)cfg->Validate();

  static const std::string path = [] {
    char tmpl[] = "/tmp/oklog-fuzz-flags-XXXXXX";
    FUZZ_CHECK(mkdtemp(tmpl) != nullptr);
    return std::string(tmpl) + "/config";
  }();
  {
    std::ofstream out(path, std::ios::trunc);
    out << file;
  }
  Values v;
  FlagSet fs("fuzz");
  Bind(&fs, &v);
  (void)fs.ParseConfigFile(path);
  return 0;
}
