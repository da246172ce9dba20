/**
 * Reading our documents: YAML (one or more `---`-separated documents) or JSON, and deciding what
 * each document is validated as:
 *   1. a `# validate-as: <message full name> [partial]` comment line in the document's header
 *      (used by envoy/snippets/ fragments, which are pasted into other configs);
 *   2. a top-level "@type" → an xDS resource / Any (e.g. per-deployment-cluster.example.yaml);
 *   3. `apiVersion` + `kind` → a Kubernetes object: shape check only (k8s.ts); a kustomize
 *      Kustomization also has its `resources` read and checked as one set (k8s-set.ts);
 *   4. otherwise an Envoy Bootstrap.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative } from "node:path";
import { parseAllDocuments } from "yaml";
import { checkKubernetesObject } from "./k8s.js";
import { checkKubernetesSet, type SetEntry } from "./k8s-set.js";
import { BOOTSTRAP, formatIssue, validateAnyResource, validateBootstrap, validateDiscoveryResponse, validateMessage, type Issue, type ValidationResult, type WalkOptions } from "./index.js";

export interface ParsedDocument {
  /** 0-based index in the file. */
  index: number;
  value: unknown;
  /** From a `# validate-as:` directive. */
  validateAs?: string;
  partial?: boolean;
}

export class DocumentParseError extends Error {}

const DIRECTIVE = /^\s*validate-as:\s*([\w.]+)(\s+partial)?\s*$/m;

/** Parses YAML or JSON text into documents (throws DocumentParseError with line info). */
export function parseDocuments(text: string, source = "<text>"): ParsedDocument[] {
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true, merge: false });
  const out: ParsedDocument[] = [];
  docs.forEach((doc, index) => {
    if (doc.errors.length > 0) throw new DocumentParseError(`${source} (document ${index + 1}): ${doc.errors.map((e) => e.message).join("; ")}`);
    const value = doc.toJS({ maxAliasCount: 50 }) as unknown;
    if (value === null || value === undefined) return; // empty document (e.g. trailing ---)
    // The directive sits in the document's leading comment, which `yaml` attaches to the document,
    // to its root node or to the first key depending on blank lines: look at all three.
    const d = doc as unknown as { commentBefore?: string | null; contents?: { commentBefore?: string; items?: { key?: { commentBefore?: string } }[] } };
    const head = [d.commentBefore, d.contents?.commentBefore, d.contents?.items?.[0]?.key?.commentBefore].filter(Boolean).join("\n");
    const m = DIRECTIVE.exec(head);
    out.push({ index, value, validateAs: m?.[1], partial: Boolean(m?.[2]) });
  });
  return out;
}

export function readDocuments(file: string): ParsedDocument[] {
  return parseDocuments(readFileSync(file, "utf8"), file);
}

export interface DocumentReport {
  index: number;
  kind: string;
  result: ValidationResult;
}

/** By message name, with the extra checks for Bootstrap and DiscoveryResponse. */
function byType(type: string, v: unknown, options: WalkOptions = {}): ValidationResult {
  if (type === BOOTSTRAP && !options.partial) return validateBootstrap(v);
  if (type === "envoy.service.discovery.v3.DiscoveryResponse" && !options.partial) return validateDiscoveryResponse(v);
  return validateMessage(type, v, options);
}

/** Validates one parsed document by the rules in this file's header. */
export function validateDocument(doc: ParsedDocument, typeOverride?: string): DocumentReport {
  const v = doc.value as Record<string, unknown>;
  if (typeOverride) return { index: doc.index, kind: typeOverride, result: byType(typeOverride, v) };
  if (doc.validateAs) {
    const result = byType(doc.validateAs, v, { partial: doc.partial });
    return { index: doc.index, kind: doc.validateAs + (doc.partial ? " (partial)" : ""), result };
  }
  if (v && typeof v === "object" && !Array.isArray(v)) {
    if ("@type" in v) {
      const result = validateAnyResource(v);
      return { index: doc.index, kind: result.type, result };
    }
    if ("apiVersion" in v && "kind" in v) {
      const result = checkKubernetesObject(v);
      const embedded = v.kind === "EnvoyFilter" || v.kind === "EnvoyPatchPolicy" ? " + embedded Envoy protos" : "";
      return { index: doc.index, kind: `Kubernetes ${String(v.kind)} (shape check${embedded})`, result };
    }
  }
  return { index: doc.index, kind: "envoy.config.bootstrap.v3.Bootstrap", result: validateBootstrap(v) };
}

/**
 * A kustomization's resources, as `kubectl apply -k` would read them: files in or below its folder
 * (kustomize's default load restrictor refuses others), each document one object of the set.
 */
export function loadKustomization(file: string, kustomization?: Record<string, unknown>): { namespace?: string; entries: SetEntry[]; issues: Issue[] } {
  const k = kustomization ?? (readDocuments(file)[0]?.value as Record<string, unknown> | undefined) ?? {};
  const dir = dirname(file);
  const entries: SetEntry[] = [];
  const issues: Issue[] = [];
  const resources = Array.isArray(k.resources) ? k.resources : [];
  resources.forEach((r, i) => {
    if (typeof r !== "string") return;
    const abs = join(dir, r);
    const rel = relative(dir, abs);
    if (isAbsolute(r) || rel.startsWith("..") || /^[a-z]+:\/\//i.test(r)) return void issues.push({ path: `resources[${i}]`, message: `"${r}" is outside the kustomization's folder: kustomize's default load restrictor refuses it (apply it with kubectl apply -f, or reference it in README)` });
    if (!existsSync(abs)) return void issues.push({ path: `resources[${i}]`, message: `"${r}": no such file` });
    if (!statSync(abs).isFile()) return void issues.push({ path: `resources[${i}]`, message: `"${r}" is a folder: only files are followed here` });
    try {
      for (const d of readDocuments(abs)) {
        const v = d.value;
        if (typeof v !== "object" || v === null || Array.isArray(v) || !("kind" in v)) issues.push({ path: `resources[${i}]`, message: `"${r}" document ${d.index + 1} is not a Kubernetes object` });
        else entries.push({ source: `${rel}#${d.index + 1}`, value: v as Record<string, unknown> });
      }
    } catch (e) {
      issues.push({ path: `resources[${i}]`, message: (e as Error).message });
    }
  });
  return { namespace: typeof k.namespace === "string" ? k.namespace : undefined, entries, issues };
}

/** Validates every document of a file; returns printable lines and whether all passed. */
export function validateFile(file: string, typeOverride?: string): { ok: boolean; lines: string[]; reports: DocumentReport[] } {
  const lines: string[] = [];
  let docs: ParsedDocument[];
  try {
    docs = readDocuments(file);
  } catch (e) {
    return { ok: false, lines: [`${file}: ${(e as Error).message}`], reports: [] };
  }
  const reports = docs.map((d) => validateDocument(d, typeOverride));
  for (const r of reports) {
    const v = docs.find((d) => d.index === r.index)?.value as Record<string, unknown> | undefined;
    if (typeOverride || v?.kind !== "Kustomization") continue;
    // Its resources, checked as the one set `kubectl apply -k` applies.
    const k = loadKustomization(file, v);
    const errors = [...k.issues, ...checkKubernetesSet(k.entries, { namespace: k.namespace })];
    r.kind = `Kubernetes Kustomization (shape check + its ${k.entries.length} objects as one set)`;
    r.result = { ...r.result, ok: r.result.ok && errors.length === 0, errors: [...r.result.errors, ...errors] };
  }
  if (reports.length === 0) lines.push(`${file}: no document`);
  for (const r of reports) {
    const where = docs.length > 1 ? `${file}#${r.index + 1}` : file;
    lines.push(`${where}: ${r.result.ok ? "OK" : "INVALID"} as ${r.kind}`);
    for (const e of r.result.errors) lines.push(`  error   ${formatIssue(e)}`);
    for (const w of r.result.warnings) lines.push(`  warning ${formatIssue(w)}`);
  }
  return { ok: reports.length > 0 && reports.every((r) => r.result.ok), lines, reports };
}

export type { Issue };
