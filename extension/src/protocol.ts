// Redline's wire protocol between the VS Code extension and the server.
//
// Mirrors server/protocol.py: change both together. Everything travels over standard LSP: commands
// through `workspace/executeCommand`, custom notifications under the `redline/` prefix, and settings in
// `initializationOptions` and `workspace/didChangeConfiguration` (section `redline`).

// --- Commands the server executes (workspace/executeCommand) ------------------------------------
// The language client registers these as VS Code commands itself (from the server's
// executeCommandProvider), so the extension's own commands use other ids (see CLIENT_COMMANDS).

/** Sent by the editor when the user accepts an inline suggestion. Arguments: [suggestionId: string]. */
export const CMD_ACCEPTED = 'redline.accepted';
/** Pause / resume suggestions and capture. No arguments. Return the new status payload. */
export const CMD_PAUSE = 'redline.pause';
export const CMD_RESUME = 'redline.resume';
/** Returns the status payload without changing anything. */
export const CMD_STATUS = 'redline.status';
/**
 * Start retraining now. No arguments. Returns RetrainResult. Progress arrives as LSP work-done
 * progress (server-created token, cancellable) and in the status payload's `training`.
 */
export const CMD_RETRAIN = 'redline.retrain';
/** Stop a running retraining. No arguments. Returns {cancelled: boolean}. */
export const CMD_CANCEL_RETRAIN = 'redline.cancelRetrain';

export const SERVER_COMMANDS = [
    CMD_ACCEPTED,
    CMD_PAUSE,
    CMD_RESUME,
    CMD_STATUS,
    CMD_RETRAIN,
    CMD_CANCEL_RETRAIN,
] as const;

export interface RetrainResult {
    started: boolean;
    message: string;
}

export interface CancelRetrainResult {
    cancelled: boolean;
}

// --- Notifications the server sends --------------------------------------------------------------

/** Server -> client, payload StatusPayload. */
export const NOTIFY_STATUS = 'redline/status';
export const STATES = ['starting', 'ready', 'thinking', 'paused', 'error'] as const;
export type State = (typeof STATES)[number];

export interface StatusPayload {
    state: State;
    message: string;
    /** The id of what is served: a version id, or `base:<model folder>` without a trained version. */
    model: string | null;
    /** The active model version; null while the model loads. */
    version?: VersionSummary | null;
    /** The last (or current) retraining; null when none ran since the server started. */
    training?: TrainingStatus | null;
    /** Request counters since the server started. */
    counters?: Record<string, number>;
}

export interface VersionSummary {
    /** A version id (YYYYMMDD-HHMMSS-<hex>) or `base:<model folder>`. */
    id: string;
    /** The policies served: "base", one per trained adapter, and "mixture" when there is one. */
    policies: string[];
    /** When the version was committed (seconds since the epoch); null for the base model. */
    trained_at: number | null;
    /** Edit counts of the run: loaded / kept / train / validation; null for the base model. */
    edits: Record<string, number> | null;
    /** Mean validation edit cost per policy (lower is better); null where not measured. */
    validation: Record<string, number | null>;
    /** Validation log-loss of the edited texts per policy (nats per token): what policies are ranked by. */
    validation_log_loss?: Record<string, number | null>;
    /** The live bandit that picks a policy per request. */
    bandit?: BanditSummary;
}

export interface BanditSummary {
    /** Settled edits the bandit has learnt from (all languages). */
    episodes: number;
    arms: Record<string, BanditArm>;
}

export interface BanditArm {
    /** Settled edits observed for this policy. */
    n: number;
    /** Prior pseudo-observations from validation. */
    pseudo_n?: number;
    /** Mean edit cost (prior included); lower is better. */
    mean_cost: number | null;
    /** Optimistic index: the lowest is chosen next. */
    index: number | null;
}

export const TRAINING_STATES = ['running', 'done', 'cancelled', 'failed'] as const;
export type TrainingState = (typeof TRAINING_STATES)[number];

export interface TrainingStatus {
    state: TrainingState;
    message: string;
    /** Percent of the current stage (not of the whole run); null when unknown. */
    percent: number | null;
    /** "requested" or "automatic". */
    reason?: string;
    stage?: string | null;
    learner?: string | null;
}

export function isStatusPayload(value: unknown): value is StatusPayload {
    if (typeof value !== 'object' || value === null) {
        return false;
    }
    const v = value as Record<string, unknown>;
    return typeof v.state === 'string' && (STATES as readonly string[]).includes(v.state);
}

// --- Settings (section "redline"; camelCase as in VS Code) ---------------------------------------

export const SETTINGS_SECTION = 'redline';

/** What the server reads from the `redline` section. pythonPath and trace are the client's alone. */
export interface Settings {
    /** Local Hugging Face model folder; empty = the embedded default model. */
    modelPath: string;
    /** Suggestions on/off. */
    enabled: boolean;
    /** Language ids to suggest in; ["*"] = all. */
    languages: string[];
    /** Upper bound on generated tokens per suggestion. */
    maxSuggestionTokens: number;
    /** Record what becomes of each suggestion (for learning). */
    capture: boolean;
    /** An accepted span with no edit inside it for this long (seconds, 1-3600) is final. */
    settleSeconds: number;
    /** Globs added to the built-in exclusions (.env*, *.pem, *secret*...): no suggestions, no records. */
    exclude: string[];
    /** Older records are deleted when the server starts; 0 keeps everything. */
    retentionDays: number;
    /** Retrain after this many new settled edits while idle; 0 = never automatically. */
    autoRetrainEdits: number;
    /** "Idle": no suggestion requested for this many seconds. */
    autoRetrainIdleSeconds: number;
}

/** Settings the server reads only when it starts: changing them restarts it. */
export const RESTART_SETTINGS = ['capture', 'settleSeconds', 'exclude', 'retentionDays'] as const;

export const DEFAULT_LANGUAGES = [
    'markdown',
    'plaintext',
    'python',
    'javascript',
    'typescript',
    'javascriptreact',
    'typescriptreact',
];

// --- Outside LSP ---------------------------------------------------------------------------------
// The data commands run the server's command line with the server's Python and environment (cli.ts):
// `<python> -m server stats --json`, `... export <file> --format sft|preference`,
// `... forget --all|--since 1h|--folder <path> --yes`, and the data folder comes from
// `<python> -c "from server import paths; print(paths.data_home())"`.

// --- The extension's own commands (contributed in package.json) ----------------------------------

export const CLIENT_COMMANDS = {
    pause: 'redline.client.pause',
    resume: 'redline.client.resume',
    togglePause: 'redline.client.togglePause',
    showOutput: 'redline.client.showOutput',
    restart: 'redline.client.restart',
    retrain: 'redline.client.retrain',
    cancelRetrain: 'redline.client.cancelRetrain',
    showStatistics: 'redline.client.showStatistics',
    forget: 'redline.client.forget',
    openDataFolder: 'redline.client.openDataFolder',
    exportEdits: 'redline.client.exportEdits',
} as const;
