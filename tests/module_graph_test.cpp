// The module graph, enforced: every #include in src/, tools/ and tests/ and every
// target_link_libraries of our CMake files must follow an arrow listed in docs/ARCHITECTURE.md
// (the block between <!-- module-graph:begin --> and <!-- module-graph:end -->, one
// "- from -> to" per line). The rules are stated there; this file only applies them.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

const std::set<std::string> kModules = {"common", "rpc",  "gossip", "segments",
                                        "query",  "node", "cli",    "bench"};
// Test folders checked as tests of a module (tests/e2e and tests/cluster drive the binary).
const std::set<std::string> kTestedModules = {"common", "rpc", "gossip", "segments", "query", "node"};

struct Graph {
  std::map<std::string, std::set<std::string>> arrows;  // from -> to ("*" = any module)
  std::set<std::string> to_remove;                      // "from -> to" listed as not yet removed

  bool Allows(const std::string& from, const std::string& to) const {
    if (from == to) return true;
    auto it = arrows.find(from);
    return it != arrows.end() && (it->second.count(to) || it->second.count("*"));
  }
  // `from` and every module reachable from it through a chain of arrows.
  std::set<std::string> Reach(const std::string& from) const {
    std::set<std::string> seen = {from};
    std::vector<std::string> todo = {from};
    while (!todo.empty()) {
      std::string m = todo.back();
      todo.pop_back();
      for (const auto& to : kModules)
        if (Allows(m, to) && seen.insert(to).second) todo.push_back(to);
    }
    return seen;
  }
};

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses the arrow block of the architecture doc. Appends what is wrong with it to `errors`.
Graph ParseGraph(const std::string& doc, std::vector<std::string>* errors) {
  Graph g;
  const std::string begin = "<!-- module-graph:begin -->", end = "<!-- module-graph:end -->";
  size_t b = doc.find(begin), e = doc.find(end);
  if (b == std::string::npos || e == std::string::npos || e < b) {
    errors->push_back("no " + begin + " ... " + end + " block");
    return g;
  }
  std::istringstream block(doc.substr(b + begin.size(), e - b - begin.size()));
  const std::regex arrow(R"(^\s*-\s*([a-z_]+)\s*->\s*([a-z_]+|\*)\s*$)");
  bool removing = false;
  std::string line;
  while (std::getline(block, line)) {
    if (line.find("not yet removed") != std::string::npos) removing = true;
    std::smatch m;
    if (!std::regex_match(line, m, arrow)) {
      if (line.find("->") != std::string::npos) errors->push_back("unparsed arrow line: " + line);
      continue;
    }
    std::string from = m[1], to = m[2];
    if (!kModules.count(from)) errors->push_back("unknown module in arrow: " + from);
    if (to != "*" && !kModules.count(to)) errors->push_back("unknown module in arrow: " + to);
    g.arrows[from].insert(to);
    if (removing) g.to_remove.insert(from + " -> " + to);
  }
  if (g.arrows.empty()) errors->push_back("the module-graph block lists no arrow");
  return g;
}

// What a file is, by its path relative to the root.
struct Owner {
  enum class Kind { kModule, kTest, kTestHelper, kUnchecked, kOutside } kind;
  std::string module;  // kModule: its module; kTest: the module it tests
};

Owner OwnerOf(const std::string& rel) {
  auto starts = [&](const std::string& p) { return rel.rfind(p, 0) == 0; };
  if (rel == "src/node.cpp" || starts("src/node/")) return {Owner::Kind::kModule, "node"};
  for (const char* m : {"common", "rpc", "gossip", "segments", "query"})
    if (starts(std::string("src/") + m + "/")) return {Owner::Kind::kModule, m};
  if (starts("tools/cli/")) return {Owner::Kind::kModule, "cli"};
  if (starts("tools/bench/")) return {Owner::Kind::kModule, "bench"};
  if (starts("src/") || starts("tools/")) return {Owner::Kind::kOutside, ""};
  if (starts("tests/")) {
    std::string rest = rel.substr(6);
    size_t slash = rest.find('/');
    if (slash == std::string::npos)  // tests/x.h: shared helpers; tests/x.cpp: this test
      return {rel.ends_with(".h") ? Owner::Kind::kTestHelper : Owner::Kind::kUnchecked, ""};
    std::string dir = rest.substr(0, slash);
    if (kTestedModules.count(dir)) return {Owner::Kind::kTest, dir};
    return {Owner::Kind::kUnchecked, ""};
  }
  return {Owner::Kind::kUnchecked, ""};
}

bool IsSource(const fs::path& p) {
  static const std::set<std::string> kExt = {".h", ".hpp", ".c", ".cc", ".cpp"};
  return kExt.count(p.extension().string()) > 0;
}

std::string Rel(const fs::path& root, const fs::path& p) {
  return fs::relative(p, root).generic_string();
}

// The file an include names, searched as the compiler would: beside the includer (quotes only),
// tests/ (for tests), src/, then the repository root. nullopt: not one of ours.
std::optional<std::string> Resolve(const fs::path& root, const std::string& includer, char quote,
                                   const std::string& name) {
  std::vector<fs::path> dirs;
  if (quote == '"') dirs.push_back((root / includer).parent_path());
  if (includer.rfind("tests/", 0) == 0) dirs.push_back(root / "tests");
  dirs.push_back(root / "src");
  dirs.push_back(root);
  for (const auto& d : dirs) {
    fs::path p = d / name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) {
      std::string rel = Rel(root, fs::weakly_canonical(p));
      if (rel.rfind("..", 0) != 0) return rel;
    }
  }
  return std::nullopt;
}

// Every include in src/, tools/ and tests/ that breaks the graph, as "file:line: why".
std::vector<std::string> CheckIncludes(const fs::path& root_in, const Graph& g) {
  const fs::path root = fs::canonical(root_in);
  std::vector<std::string> bad;
  const std::regex include(R"(^\s*#\s*include\s*([<"])([^">]+)[">])");
  std::vector<std::string> files;
  for (const char* top : {"src", "tools", "tests"}) {
    if (!fs::is_directory(root / top)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / top))
      if (e.is_regular_file() && IsSource(e.path())) files.push_back(Rel(root, e.path()));
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    Owner owner = OwnerOf(file);
    if (owner.kind == Owner::Kind::kUnchecked) continue;
    if (owner.kind == Owner::Kind::kOutside) {
      bad.push_back(file + ": not inside any module's folder (list the module in this test and "
                           "docs/ARCHITECTURE.md)");
      continue;
    }
    std::set<std::string> reach;
    if (owner.kind == Owner::Kind::kTest) reach = g.Reach(owner.module);
    if (owner.kind == Owner::Kind::kTestHelper) reach = {"common"};
    std::istringstream in(ReadFile(root / file));
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::smatch m;
      if (!std::regex_search(line, m, include)) continue;
      const char quote = m[1].str()[0];
      const std::string name = m[2];
      const std::string where = file + ":" + std::to_string(n) + ": #include " + name + ": ";
      auto target = Resolve(root, file, quote, name);
      if (!target) {
        if (quote == '"') bad.push_back(where + "not a file of this tree (use <> for others)");
        continue;
      }
      Owner t = OwnerOf(*target);
      if (t.kind == Owner::Kind::kOutside || t.kind == Owner::Kind::kUnchecked) {
        bad.push_back(where + *target + " belongs to no module");
        continue;
      }
      if (owner.kind == Owner::Kind::kModule) {
        if (t.kind != Owner::Kind::kModule)
          bad.push_back(where + "sources may not include test files");
        else if (!g.Allows(owner.module, t.module))
          bad.push_back(where + "arrow " + owner.module + " -> " + t.module +
                        " is not in docs/ARCHITECTURE.md");
        continue;
      }
      // A test or a test helper: shared helpers are fine; the rest must be reachable.
      if (t.kind == Owner::Kind::kTestHelper) continue;
      if (!reach.count(t.module)) {
        std::string who = owner.kind == Owner::Kind::kTest ? "tests/" + owner.module + "/ (" +
                                                                 owner.module + " reaches only what its arrows do)"
                                                           : "a shared test helper (may include only common)";
        bad.push_back(where + "module " + t.module + " is out of reach of " + who);
      }
    }
  }
  return bad;
}

// The module a library of ours belongs to; nullopt for anything else (system libraries).
std::optional<std::string> LibraryModule(const std::string& lib) {
  static const std::map<std::string, std::string> kLibs = {
      {"oklog_common", "common"},     {"oklog_rpc", "rpc"},           {"oklog_gossip_core", "gossip"},
      {"oklog_gossip_sim", "gossip"}, {"oklog_gossip", "gossip"},     {"oklog_segments", "segments"},
      {"oklog_query", "query"},       {"oklog_cli", "cli"},           {"oklog_bench_util", "bench"},
      {"oklog_node", "node"}};
  auto it = kLibs.find(lib);
  if (it == kLibs.end()) return std::nullopt;
  return it->second;
}

// Every target_link_libraries of a CMakeLists.txt in our module folders (and the top level, whose
// targets are the node's) that links one of our libraries against the graph.
std::vector<std::string> CheckLinks(const fs::path& root_in, const Graph& g) {
  const fs::path root = fs::canonical(root_in);
  std::vector<std::string> bad;
  std::vector<std::string> files = {"CMakeLists.txt"};
  for (const char* top : {"src", "tools"})
    if (fs::is_directory(root / top))
      for (const auto& e : fs::recursive_directory_iterator(root / top))
      if (e.is_regular_file() && e.path().filename() == "CMakeLists.txt") files.push_back(Rel(root, e.path()));
  const std::regex link(R"(target_link_libraries\s*\(([^)]*)\))");
  const std::regex token(R"([A-Za-z0-9_:${}]+)");
  for (const auto& file : files) {
    std::string module;
    if (file == "CMakeLists.txt") {
      module = "node";
    } else if (file == "tools/CMakeLists.txt") {
      continue;  // only add_subdirectory
    } else {
      Owner o = OwnerOf(file);
      if (o.kind != Owner::Kind::kModule) {
        // A folder of scripts (tools/chaos) may add tests; building C++ outside a module may not.
        if (std::regex_search(ReadFile(root / file), link))
          bad.push_back(file + ": not inside any module's folder");
        continue;
      }
      module = o.module;
    }
    std::string text = ReadFile(root / file);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), link); it != std::sregex_iterator(); ++it) {
      std::string args = (*it)[1];
      bool first = true;
      std::string target;
      for (auto t = std::sregex_iterator(args.begin(), args.end(), token); t != std::sregex_iterator(); ++t) {
        std::string tok = t->str();
        if (first) {
          target = tok;
          first = false;
          continue;
        }
        auto to = LibraryModule(tok);
        if (to && !g.Allows(module, *to))
          bad.push_back(file + ": " + target + " links " + tok + ": arrow " + module + " -> " + *to +
                        " is not in docs/ARCHITECTURE.md");
      }
    }
  }
  return bad;
}

fs::path SourceRoot() {
  const char* dir = std::getenv("OKLOG_SOURCE_DIR");
  return fs::path(dir ? dir : OKLOG_SOURCE_DIR_DEFAULT);
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

Graph RealGraph() {
  std::vector<std::string> errors;
  Graph g = ParseGraph(ReadFile(SourceRoot() / "docs/ARCHITECTURE.md"), &errors);
  EXPECT_TRUE(errors.empty()) << Join(errors);
  return g;
}

TEST(ModuleGraph, ArchitectureDocListsTheArrows) {
  ASSERT_FALSE(SourceRoot().empty()) << "OKLOG_SOURCE_DIR is not set";
  Graph g = RealGraph();
  EXPECT_TRUE(g.Allows("segments", "rpc"));
  EXPECT_FALSE(g.Allows("segments", "gossip"));
  EXPECT_FALSE(g.Allows("segments", "query"));
  EXPECT_FALSE(g.Allows("common", "rpc"));
  EXPECT_FALSE(g.Allows("gossip", "rpc"));  // gossip reaches TCP through its StreamTransport only
}

TEST(ModuleGraph, EveryIncludeFollowsAnArrowOfTheArchitectureDoc) {
  ASSERT_FALSE(SourceRoot().empty()) << "OKLOG_SOURCE_DIR is not set";
  auto bad = CheckIncludes(SourceRoot(), RealGraph());
  EXPECT_TRUE(bad.empty()) << Join(bad);
}

TEST(ModuleGraph, EveryCMakeLinkFollowsAnArrowOfTheArchitectureDoc) {
  ASSERT_FALSE(SourceRoot().empty()) << "OKLOG_SOURCE_DIR is not set";
  auto bad = CheckLinks(SourceRoot(), RealGraph());
  EXPECT_TRUE(bad.empty()) << Join(bad);
}

// The checker itself, on a small tree made here: it must see what it is for.
class ModuleGraphCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "module_graph_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    std::vector<std::string> errors;
    graph_ = ParseGraph(
        "x\n<!-- module-graph:begin -->\n- rpc -> common\n- segments -> common\n- segments -> rpc\n- bench -> *\n"
        "<!-- module-graph:end -->\n",
        &errors);
    ASSERT_TRUE(errors.empty()) << Join(errors);
    Write("src/common/status.h", "#pragma once\n#include <string>\n");
    Write("src/rpc/rpc.h", "#include \"common/status.h\"\n");
    Write("src/query/query.h", "#pragma once\n");
    Write("tests/test_util.h", "#pragma once\n#include <string>\n");
    Write("tests/query/query_test_util.h", "#include \"query/query.h\"\n");
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << text;
  }
  fs::path root_;
  Graph graph_;
};

TEST_F(ModuleGraphCheckerTest, ListedArrowsAndTransitiveTestIncludesPass) {
  Write("src/segments/log.cpp", "#include \"rpc/rpc.h\"\n#include <vector>\n");
  Write("tests/segments/log_test.cpp", "#include \"common/status.h\"\n#include \"test_util.h\"\n");
  Write("tools/bench/b.cpp", "#include \"query/query.h\"\n");
  EXPECT_EQ(Join(CheckIncludes(root_, graph_)), "");
}

TEST_F(ModuleGraphCheckerTest, AnIncludeWithoutAnArrowIsReported) {
  Write("src/segments/log.cpp", "#include \"rpc/rpc.h\"\n  #  include \"query/query.h\"\n");
  auto bad = CheckIncludes(root_, graph_);
  ASSERT_EQ(bad.size(), 1u) << Join(bad);
  EXPECT_NE(bad[0].find("src/segments/log.cpp:2"), std::string::npos) << bad[0];
  EXPECT_NE(bad[0].find("segments -> query"), std::string::npos) << bad[0];
}

TEST_F(ModuleGraphCheckerTest, CommonIncludesNothingOfOurs) {
  Write("src/common/x.cpp", "#include <rpc/rpc.h>\n");
  EXPECT_EQ(CheckIncludes(root_, graph_).size(), 1u);
}

TEST_F(ModuleGraphCheckerTest, ATestMayNotReachBeyondItsModule) {
  Write("tests/segments/a_test.cpp", "#include \"query/query.h\"\n");
  Write("tests/segments/b_test.cpp", "#include \"query/query_test_util.h\"\n");
  Write("tests/rpc/c_test.cpp", "#include \"segments/nothing_here.h\"\n");
  auto bad = CheckIncludes(root_, graph_);
  EXPECT_EQ(bad.size(), 3u) << Join(bad);
}

TEST_F(ModuleGraphCheckerTest, FilesOutsideEveryModuleAreReported) {
  Write("src/newmodule/x.cpp", "\n");
  Write("tools/loose.cpp", "\n");
  EXPECT_EQ(CheckIncludes(root_, graph_).size(), 2u);
}

TEST_F(ModuleGraphCheckerTest, ALinkWithoutAnArrowIsReported) {
  Write("CMakeLists.txt", "target_link_libraries(oklog PRIVATE oklog_query)\n");
  Write("src/segments/CMakeLists.txt",
        "target_link_libraries(oklog_segments PUBLIC oklog_common oklog_rpc\n  PRIVATE PkgConfig::LZ4 oklog_gossip)\n");
  auto bad = CheckLinks(root_, graph_);
  // node -> query is not in this graph either.
  EXPECT_EQ(bad.size(), 2u) << Join(bad);
}

TEST_F(ModuleGraphCheckerTest, AScriptsFolderMayAddTestsButNotBuildCxxOutsideAModule) {
  Write("tools/scripts/CMakeLists.txt", "add_test(NAME s COMMAND python3 s.py)\n");
  EXPECT_TRUE(CheckLinks(root_, graph_).empty()) << Join(CheckLinks(root_, graph_));
  Write("tools/loose/CMakeLists.txt", "add_executable(x x.cpp)\ntarget_link_libraries(x PRIVATE oklog_common)\n");
  auto bad = CheckLinks(root_, graph_);
  ASSERT_EQ(bad.size(), 1u) << Join(bad);
  EXPECT_NE(bad[0].find("tools/loose/CMakeLists.txt: not inside any module's folder"), std::string::npos) << bad[0];
}

}  // namespace
