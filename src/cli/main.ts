/**
 * The `channel-state` command line: dispatches to the subcommands, parses their flags with
 * `node:util.parseArgs`, and turns every failure into one clear line and an exit code.
 *
 * @internal
 */
import * as fs from "node:fs"
import { parseArgs } from "node:util"
import type { Command } from "./command.js"
import { CliFailure, ExitCode, print, printError } from "./output.js"

/** Each command's summary, and its module, loaded only when it runs: `--help` and `--version` load no store code. */
const commands: Record<string, { readonly summary: string; readonly load: () => Promise<Command> }> = {
  demo: { summary: "show six caches surviving a restart (what `npm start` runs)", load: async () => (await import("./demo.js")).demoCommand },
  inspect: { summary: "show what a state database holds, per owner and namespace", load: async () => (await import("./inspect.js")).inspectCommand },
  purge: { summary: "delete one owner's rows (all, one namespace, or only expired ones)", load: async () => (await import("./purge.js")).purgeCommand },
  doctor: { summary: "check a state database and say what to fix", load: async () => (await import("./doctor.js")).doctorCommand }
}

const usage = () => `Usage: channel-state <command> [options]

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`)
  .join("\n")}

Every command takes --help and --version. Exit codes: 0 ok, 1 something is wrong, 2 bad usage.`

/** This package's version, from its package.json. */
const version = (): string => {
  const manifest = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { readonly version: string }
  return `channel-state ${manifest.version}`
}

/** Runs the CLI with `argv` (without node and the script); resolves to the exit code. Never throws. */
export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const [name, ...rest] = argv
  if (name === "--version" || name === "-v" || rest.includes("--version")) {
    print(version())
    return ExitCode.ok
  }
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    print(usage())
    return name === undefined ? ExitCode.usage : ExitCode.ok
  }
  const entry = commands[name]
  if (entry === undefined) {
    printError(new CliFailure(`unknown command "${name}"`, ExitCode.usage, "Run `channel-state --help` for the list of commands."))
    return ExitCode.usage
  }
  try {
    const command = await entry.load()
    const { values } = parseArgs({ args: [...rest], options: { ...command.options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false })
    if (values.help) {
      print(command.help)
      return ExitCode.ok
    }
    return await command.run(values)
  } catch (error) {
    const failure =
      error instanceof CliFailure
        ? error
        : (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
          ? new CliFailure((error as Error).message, ExitCode.usage, `Run \`channel-state ${name} --help\`.`)
          : new CliFailure(error instanceof Error ? error.message : String(error))
    printError(failure)
    return failure.exitCode
  }
}
