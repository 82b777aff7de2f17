/// A command's options, parsed from `--name value` pairs and `--flag` switches.
struct CommandLineOptions {
    struct UsageError: Error, CustomStringConvertible {
        let description: String
    }

    private var values: [String: [String]] = [:]
    private var flags: Set<String> = []
    private(set) var positional: [String] = []
    private var consumed: Set<String> = []

    /// - Parameters:
    ///   - valued: option names (without `--`) that take a value.
    ///   - switches: option names that take none.
    init(_ arguments: [String], valued: Set<String>, switches: Set<String>) throws(UsageError) {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                positional.append(argument)
                continue
            }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if switches.contains(name), inlineValue == nil {
                flags.insert(name)
            } else if valued.contains(name) {
                guard let value = inlineValue ?? (index < arguments.count ? arguments[index] : nil) else {
                    throw UsageError(description: "option --\(name) needs a value")
                }
                if inlineValue == nil { index += 1 }
                values[name, default: []].append(value)
            } else {
                let known = (valued.map { "--\($0) VALUE" } + switches.map { "--\($0)" }).sorted().joined(separator: ", ")
                throw UsageError(description: "unknown option --\(name); this command takes \(known)")
            }
        }
    }

    func has(_ flag: String) -> Bool { flags.contains(flag) }

    /// Rejects positional arguments, for commands that take options only.
    func rejectPositional() throws(UsageError) {
        guard let first = positional.first else { return }
        throw UsageError(description: "unexpected argument \"\(first)\"; options start with --")
    }

    func string(_ name: String) -> String? { values[name]?.last }

    func strings(_ name: String) -> [String] { values[name] ?? [] }

    func integer(_ name: String, in range: ClosedRange<Int>) throws(UsageError) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError(
                description: "--\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }

    func number(_ name: String, in range: ClosedRange<Double>) throws(UsageError) -> Double? {
        guard let text = string(name) else { return nil }
        guard let value = Double(text), range.contains(value) else {
            throw UsageError(description: "--\(name) must be a number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }
}
