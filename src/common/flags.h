// Go-style command-line flags, as OK Log's users type them: -name value, -name=value, --name,
// booleans as -name or -name=false, repeatable string lists, durations and sizes. A config file
// (-config FILE) holds "name value" or "name = value" lines; the command line wins over it.
// Not thread-safe; used once at start-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/status.h"

namespace oklog {

class FlagSet {
 public:
  explicit FlagSet(std::string name) : name_(std::move(name)) {}

  // Each Add* binds a flag to the variable, which already holds the default.
  void String(const std::string& name, std::string* v, const std::string& help);
  void Bool(const std::string& name, bool* v, const std::string& help);
  void Int(const std::string& name, int64_t* v, const std::string& help);
  void Duration(const std::string& name, Nanos* v, const std::string& help);
  void StringList(const std::string& name, std::vector<std::string>* v, const std::string& help);
  // Another spelling of an existing flag (OK Log's ingest vs ingeststore topic flags).
  void Alias(const std::string& alias, const std::string& name);

  // Parses argv (without the program and mode names). Positional arguments (after the flags,
  // or after "--") are returned. "-h"/"-help"/"--help" returns NotFound so the caller prints
  // Usage(). Unknown flags and bad values return InvalidArgument naming the flag.
  Result<std::vector<std::string>> Parse(const std::vector<std::string>& args);
  // Reads "name value" lines from a file, as if given before the command line.
  Status ParseConfigFile(const std::string& path);
  // Whether the flag was given (command line or config file).
  bool WasSet(const std::string& name) const;

  // "Usage of oklog MODE:" then one "  -name default\n    help" block per flag, sorted.
  std::string Usage() const;

 private:
  struct Flag {
    std::string help;
    std::string default_text;
    bool is_bool = false;
    std::function<Status(const std::string&)> set;
    bool set_by_user = false;
  };
  Status Set(const std::string& name, const std::string& value);
  std::string name_;
  std::map<std::string, Flag> flags_;
  std::map<std::string, std::string> aliases_;
};

}  // namespace oklog
