/** Recognise the serving engine from what an OpenAI-compatible server tells about itself. */
import type { IncomingHttpHeaders } from "node:http";

export type EngineName = "vllm" | "sglang" | "tgi" | "ollama";

export function detectEngine(evidence: { headers: IncomingHttpHeaders[]; modelCards: Record<string, unknown>[]; completion?: Record<string, unknown> | null }): EngineName | null {
  for (const card of evidence.modelCards) {
    const owner = typeof card.owned_by === "string" ? card.owned_by.toLowerCase() : "";
    if (owner === "vllm") return "vllm";
    if (owner === "sglang") return "sglang";
    if (owner === "tgi" || owner === "text-generation-inference") return "tgi";
    if (owner === "ollama" || owner === "library") return "ollama";
  }
  for (const h of evidence.headers) {
    if (h["x-compute-type"] !== undefined || h["x-compute-time"] !== undefined) return "tgi";
    const server = String(h.server ?? "").toLowerCase();
    if (server.includes("ollama")) return "ollama";
  }
  const fp = evidence.completion?.system_fingerprint;
  if (typeof fp === "string" && fp.includes("ollama")) return "ollama";
  if (evidence.modelCards.some((c) => "max_model_len" in c)) return "vllm";
  return null;
}
