// Mirrors TABLE_LIMITS in control/contracts/routing-table.ts.
export const ROUTING_TABLE_SCHEMA: f64 = 1;
export const MAX_DEPLOYMENTS: i32 = 10000;
export const MAX_INSTANCES_PER_DEPLOYMENT: i32 = 1024;
export const MAX_MODEL_NAMES: i32 = 50000;
export const MAX_ID_LENGTH: i32 = 128;
export const MAX_EXTRA_PATHS: i32 = 32;
export const MAX_EXTRA_PATH_LENGTH: i32 = 128;
export const MAX_MODEL_NAME_LENGTH: i32 = 256;
export const MAX_WEIGHT: f64 = 10000;
export const MAX_PRIORITY: f64 = 255;
export const MAX_BASE_PATH_LENGTH: i32 = 256;
export const MAX_CLUSTER_LENGTH: i32 = 256;
export const MAX_REGION_LENGTH: i32 = 64;
/** An instance's `authorization` value: "Bearer " + an API key of at most 4,096 characters. */
export const MAX_AUTHORIZATION_LENGTH: i32 = 4200;
export const MAX_SAFE_INTEGER: f64 = 9007199254740991;
/** An instance's `load.score` at most, `load.interval_ms` at most (contract 1: maxLoadScore, maxLoadIntervalMs). */
export const MAX_LOAD_SCORE: f64 = 1000000;
export const MAX_LOAD_INTERVAL_MS: f64 = 3600000;
/** An instance's `load.capacity` at most (contract 1: maxLoadCapacity). */
export const MAX_LOAD_CAPACITY: f64 = 100000;
/** JSON nesting accepted in a table document (unknown fields may nest; 64 levels is plenty). */
export const MAX_TABLE_DEPTH: i32 = 64;
