/** Model registry logic. */
import { randomBytes } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { AppError } from "../http/errors.js";
import { checkIfMatch } from "../http/preconditions.js";
import type { ModelStore } from "./store.js";
import type { Model, ModelCreate, ModelUpdate } from "./schemas.js";

export type ModelService = ReturnType<typeof createModelService>;

export function createModelService(deps: { store: ModelStore; now?: () => Date }) {
  const { store } = deps;
  const now = () => (deps.now?.() ?? new Date()).toISOString();
  return {
    async create(input: ModelCreate): Promise<Model> {
      const t = now();
      const model: Model = {
        id: input.id ?? `m-${randomBytes(4).toString("hex")}`,
        name: input.name,
        display_name: input.display_name ?? input.name,
        aliases: input.aliases,
        served_name: input.served_name ?? null,
        family: input.family ?? null,
        context_length: input.context_length ?? null,
        revision: 1,
        created_at: t,
        updated_at: t,
      };
      await store.create(model);
      return model;
    },
    list: () => store.list(),
    async get(id: string): Promise<Model> {
      const m = await store.get(id);
      if (!m) throw new AppError("not_found", `model ${id} not found`);
      return m;
    },
    update(id: string, patch: ModelUpdate, ifMatch: string | undefined): Promise<Model> {
      return store.update(id, (cur) => {
        checkIfMatch(ifMatch, cur.revision);
        const next: Model = { ...cur, revision: cur.revision + 1, updated_at: now() };
        if (patch.name !== undefined) next.name = patch.name;
        if (patch.display_name !== undefined) next.display_name = patch.display_name;
        if (patch.aliases !== undefined) next.aliases = patch.aliases;
        if (patch.served_name !== undefined) next.served_name = patch.served_name;
        if (patch.family !== undefined) next.family = patch.family;
        if (patch.context_length !== undefined) next.context_length = patch.context_length;
        const names = [next.name, ...next.aliases];
        if (new Set(names).size !== names.length) throw new AppError("validation_failed", "names must be unique", [{ path: "aliases", message: "name and aliases must be distinct" }]);
        // Nothing changes: answer the current document, write nothing (no new table version).
        if (isDeepStrictEqual({ ...next, revision: 0, updated_at: "" }, { ...cur, revision: 0, updated_at: "" })) return null;
        return next;
      });
    },
    remove(id: string, ifMatch: string | undefined): Promise<void> {
      return store.remove(id, (cur) => checkIfMatch(ifMatch, cur.revision));
    },
    /** A model by id, or by any of its client-facing names. */
    async resolve(ref: string): Promise<Model | null> {
      const byId = await store.get(ref);
      if (byId) return byId;
      const id = await store.findIdByName(ref);
      return id === null ? null : await store.get(id);
    },
  };
}
