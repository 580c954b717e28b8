#include "common/flags.h"

#include <fstream>
#include <sstream>

namespace oklog {

void FlagSet::String(const std::string& name, std::string* v, const std::string& help) {
  flags_[name] = Flag{help, "\"" + *v + "\"", false, [v](const std::string& s) {
                        *v = s;
                        return Status::Ok();
                      }};
}

void FlagSet::Bool(const std::string& name, bool* v, const std::string& help) {
  flags_[name] = Flag{help, *v ? "true" : "false", true, [v, name](const std::string& s) {
                        if (s == "true" || s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "True") *v = true;
                        else if (s == "false" || s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "False")
                          *v = false;
                        else return Status::InvalidArgument("invalid boolean value \"" + s + "\" for -" + name);
                        return Status::Ok();
                      }};
}

void FlagSet::Int(const std::string& name, int64_t* v, const std::string& help) {
  flags_[name] = Flag{help, std::to_string(*v), false, [v, name](const std::string& s) {
                        try {
                          size_t pos = 0;
                          long long x = std::stoll(s, &pos, 0);
                          if (pos != s.size()) throw std::invalid_argument(s);
                          *v = x;
                        } catch (const std::exception&) {
                          return Status::InvalidArgument("invalid value \"" + s + "\" for -" + name);
                        }
                        return Status::Ok();
                      }};
}

void FlagSet::Duration(const std::string& name, Nanos* v, const std::string& help) {
  flags_[name] = Flag{help, FormatDuration(*v), false, [v, name](const std::string& s) {
                        auto d = ParseDuration(s);
                        if (!d.ok()) return Status::InvalidArgument(d.status().message() + " for -" + name);
                        *v = d.value();
                        return Status::Ok();
                      }};
}

void FlagSet::StringList(const std::string& name, std::vector<std::string>* v, const std::string& help) {
  flags_[name] = Flag{help, "", false, [v](const std::string& s) {
                        v->push_back(s);
                        return Status::Ok();
                      }};
}

void FlagSet::Alias(const std::string& alias, const std::string& name) { aliases_[alias] = name; }

Status FlagSet::Set(const std::string& raw, const std::string& value) {
  std::string name = raw;
  if (auto a = aliases_.find(name); a != aliases_.end()) name = a->second;
  auto it = flags_.find(name);
  if (it == flags_.end()) return Status::InvalidArgument("flag provided but not defined: -" + raw);
  it->second.set_by_user = true;
  return it->second.set(value);
}

bool FlagSet::WasSet(const std::string& name) const {
  auto it = flags_.find(name);
  return it != flags_.end() && it->second.set_by_user;
}

Result<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (a.size() < 2 || a[0] != '-') {
      positional.push_back(a);
      continue;
    }
    std::string body = a.substr(a[1] == '-' ? 2 : 1);
    if (body == "h" || body == "help") return Status::NotFound("help requested");
    std::string name = body, value;
    bool has_value = false;
    if (auto eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    std::string canonical = aliases_.count(name) ? aliases_[name] : name;
    auto it = flags_.find(canonical);
    if (it == flags_.end()) return Status::InvalidArgument("flag provided but not defined: -" + name);
    if (!has_value) {
      if (it->second.is_bool) {
        value = "true";
      } else {
        if (i + 1 >= args.size()) return Status::InvalidArgument("flag needs an argument: -" + name);
        value = args[++i];
      }
    }
    OKLOG_RETURN_IF_ERROR(Set(name, value));
  }
  return positional;
}

Status FlagSet::ParseConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto trim = [](std::string s) {
      size_t b = s.find_first_not_of(" \t\r");
      size_t e = s.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    line = trim(line);
    if (line.empty()) continue;
    std::string name, value;
    auto sep = line.find_first_of(" \t=");
    if (sep == std::string::npos) {
      name = line;
      value = "true";
    } else {
      name = trim(line.substr(0, sep));
      value = trim(line.substr(sep + 1));
      if (!value.empty() && value[0] == '=') value = trim(value.substr(1));
    }
    name.erase(0, name.find_first_not_of('-'));  // "-name", "--name"; a line of dashes leaves "" (unknown)
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    Status st = Set(name, value);
    if (!st.ok()) return Status::InvalidArgument(path + ":" + std::to_string(n) + ": " + st.message());
  }
  return Status::Ok();
}

std::string FlagSet::Usage() const {
  std::ostringstream out;
  out << "Usage of oklog " << name_ << ":\n";
  for (const auto& [name, f] : flags_) {
    out << "  -" << name;
    if (!f.default_text.empty()) out << " " << f.default_text;
    out << "\n    \t" << f.help << "\n";
  }
  return out.str();
}

}  // namespace oklog
