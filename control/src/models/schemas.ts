/** Model registry: request schemas (validation + OpenAPI) and the stored/returned Model. */
import { z } from "zod";
import { Id, ModelName, ServedName } from "../../contracts/routing-table.js";

const servedName = ServedName;

/** Shown to people: no control characters (CR, LF, NUL, …) and no lone UTF-16 surrogates. */
const Label = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !/[\x00-\x1f\x7f-\x9f]/.test(s), "no control characters (CR, LF, NUL, …)")
    .refine((s) => !/[\uD800-\uDFFF]/u.test(s), "no lone surrogates (not valid Unicode text)");

export const ModelCreate = z
  .object({
    id: Id.optional().describe("Generated when absent"),
    name: ModelName.describe("The model name clients send; unique across all names and aliases"),
    display_name: Label(200).optional(),
    aliases: z.array(ModelName).max(100).default([]).describe("Other names clients may send; unique across all models"),
    served_name: servedName.optional().describe("The name the engine serves, if different from `name`"),
    family: Label(100).optional(),
    context_length: z.number().int().min(1).max(100_000_000).optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    const seen = new Set([m.name]);
    m.aliases.forEach((a, i) => {
      if (seen.has(a)) ctx.addIssue({ code: "custom", path: ["aliases", i], message: `duplicate name ${a}` });
      seen.add(a);
    });
  });

export const ModelUpdate = z
  .object({
    name: ModelName.optional(),
    display_name: Label(200).optional(),
    aliases: z.array(ModelName).max(100).optional(),
    served_name: servedName.nullable().optional(),
    family: Label(100).nullable().optional(),
    context_length: z.number().int().min(1).max(100_000_000).nullable().optional(),
  })
  .strict();

export const Model = z.object({
  id: Id,
  name: ModelName,
  display_name: z.string(),
  aliases: z.array(ModelName),
  served_name: z.string().nullable(),
  family: z.string().nullable(),
  context_length: z.number().int().nullable(),
  revision: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
});

export type ModelCreate = z.output<typeof ModelCreate>;
export type ModelUpdate = z.output<typeof ModelUpdate>;
export type Model = z.infer<typeof Model>;

/** Every client-facing name of a model. */
export const modelNames = (m: Pick<Model, "name" | "aliases">): string[] => [m.name, ...m.aliases];
/** The name the engine is expected to serve. */
export const servedNameOf = (m: Pick<Model, "name" | "served_name">): string => m.served_name ?? m.name;
