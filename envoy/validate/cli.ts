/**
 * tsx envoy/validate/cli.ts [--type <message full name>] [--quiet] <file.yaml|file.json>…
 *
 * Validates each document of each file against Envoy's v3 protos (+ our overlay). Without --type a
 * document is validated per its `# validate-as:` directive, its top-level "@type", as a Kubernetes
 * object (shape only) when it has apiVersion+kind, else as a Bootstrap. Exit 0 when all pass,
 * 1 when any fails, 2 on usage errors.
 */
import { validateFile } from "./documents.js";

function main(argv: string[]): number {
  let type: string | undefined;
  let quiet = false;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--type" || a === "-t") type = argv[++i];
    else if (a.startsWith("--type=")) type = a.slice("--type=".length);
    else if (a === "--quiet" || a === "-q") quiet = true;
    else if (a === "--help" || a === "-h") return usage(0);
    else if (a.startsWith("-")) return usage(2, `unknown option ${a}`);
    else files.push(a);
  }
  if (files.length === 0 || (type !== undefined && type === "")) return usage(2, "no file given");
  let failed = 0;
  for (const file of files) {
    const { ok, lines } = validateFile(file, type);
    if (!ok) failed++;
    for (const line of lines) if (!quiet || !ok) console.log(line);
  }
  console.log(`validated ${files.length} file(s): ${files.length - failed} ok, ${failed} with errors`);
  return failed === 0 ? 0 : 1;
}

function usage(code: number, why?: string): number {
  if (why) console.error(`error: ${why}`);
  console.error("usage: tsx envoy/validate/cli.ts [--type <envoy.message.FullName>] [--quiet] <file.yaml|file.json>…");
  return code;
}

process.exitCode = main(process.argv.slice(2));
