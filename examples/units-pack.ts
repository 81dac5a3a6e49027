/**
 * A capability author's tool pack, as a user would write one in their own repository: one
 * module exporting `plugin`. Load it by listing it in the server's configuration:
 *
 *   { "capabilities": [
 *       { "module": "./capabilities/kv/index.ts" },
 *       { "module": "./examples/units-pack.ts", "options": { "precision": 4 } } ] }
 *
 * Guest code then calls `await convert_units(5, "km", "mi")` (JavaScript/TypeScript) or
 * `convert_units(5, "km", "mi")` (Python). The model can read its typed signature from
 * `GET /v1/capabilities/stubs`.
 *
 * @module
 */
import {
  type CapabilityPlugin,
  createSyncTool,
  type RegisteredTool,
  ToolError,
} from "../src/index.ts";

/** Factors to one base unit per dimension. */
const UNITS: Record<string, { dimension: string; factor: number }> = {
  m: { dimension: "length", factor: 1 },
  km: { dimension: "length", factor: 1_000 },
  mi: { dimension: "length", factor: 1_609.344 },
  ft: { dimension: "length", factor: 0.3048 },
  g: { dimension: "mass", factor: 1 },
  kg: { dimension: "mass", factor: 1_000 },
  lb: { dimension: "mass", factor: 453.592_37 },
};

/** The pack's tools; `precision` is the number of decimals answers are rounded to. */
export function createUnitTools(options: { precision?: number } = {}): RegisteredTool[] {
  const precision = options.precision ?? 6;
  const unit = { type: "string", enum: Object.keys(UNITS) };
  return [
    createSyncTool(
      {
        name: "convert_units",
        description: `Converts a value between units of length (${["m", "km", "mi", "ft"].join(", ")}) or mass (g, kg, lb).`,
        side_effect: "none",
        input_schema: {
          type: "array",
          prefixItems: [
            { title: "value", type: "number" },
            { title: "from_unit", ...unit },
            { title: "to_unit", ...unit },
          ],
          minItems: 3,
          maxItems: 3,
        },
        output_schema: { type: "number" },
      },
      ({ args }) => {
        const [value, from, to] = args as [number, string, string];
        const source = UNITS[from]!;
        const target = UNITS[to]!;
        if (source.dimension !== target.dimension) {
          // A code of the tool's own: the guest sees it as error.code.
          throw new ToolError(
            "INCOMPATIBLE_UNITS",
            `Cannot convert ${source.dimension} (${from}) to ${target.dimension} (${to}).`,
          );
        }
        return Number(((value * source.factor) / target.factor).toFixed(precision));
      },
    ),
  ];
}

/** What the server loads. */
export const plugin: CapabilityPlugin = {
  kind: "capabilities",
  id: "units",
  create: (options) => createUnitTools(options as { precision?: number }),
};
