// Text for people: the statistics document, the status bar's version and tooltip. Pure functions over
// what the server and its CLI report (no vscode import), so they are easy to check.

import { type BanditSummary, type StatusPayload, type TrainingStatus, type VersionSummary } from './protocol';

/** One group of `redline stats --json` (total, or one language / policy / day). */
export interface StatsFigures {
    suggestions?: number;
    accepted?: number;
    acceptance_rate?: number | null;
    outcomes?: number;
    mean_cost?: number | null;
    mean_char_cost?: number | null;
}

/** `redline stats --json`. */
export interface Stats {
    total?: StatsFigures;
    by_language?: Record<string, StatsFigures>;
    by_policy?: Record<string, StatsFigures>;
    by_day?: Record<string, StatsFigures>;
    by_kind?: Record<string, { outcomes?: number; mean_cost?: number | null; mean_char_cost?: number | null }>;
}

const VERSION_ID = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})-([0-9a-f]+)$/i;

/** A few characters for the status bar: "base" for the base model, else the version's hex suffix. */
export function shortVersion(id: string | null | undefined): string | undefined {
    if (!id) {
        return undefined;
    }
    if (id.startsWith('base:') || id === 'base') {
        return 'base';
    }
    const m = VERSION_ID.exec(id);
    if (m) {
        return `v${m[7]}`;
    }
    return id.length > 12 ? `${id.slice(0, 11)}…` : id;
}

export function percent(rate: number | null | undefined): string {
    return rate === null || rate === undefined || !Number.isFinite(rate) ? '–' : `${Math.round(100 * rate)}%`;
}

export function cost(value: number | null | undefined): string {
    return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(3);
}

export function when(seconds: number | null | undefined): string {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
        return '–';
    }
    const d = new Date(seconds * 1000);
    const pad = (n: number) => String(n).padStart(2, '0');
    return (
        `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` + `${pad(d.getHours())}:${pad(d.getMinutes())}`
    );
}

/** The run in progress, if `training` describes one. */
export function runningTraining(training: TrainingStatus | null | undefined): TrainingStatus | undefined {
    return training && training.state === 'running' ? training : undefined;
}

export function isTrainingRunning(training: TrainingStatus | null | undefined): boolean {
    return runningTraining(training) !== undefined;
}

/** "training 40%" / "training" for the status bar. */
export function trainingLabel(training: TrainingStatus): string {
    const p = training.percent;
    return typeof p === 'number' && Number.isFinite(p) ? `training ${Math.round(p)}%` : 'training';
}

/** Lines about the served policies and the bandit, for the status bar's tooltip. */
export function policyLines(version: VersionSummary | null | undefined): string[] {
    if (!version) {
        return [];
    }
    const lines = [`Model version: ${version.id}${version.trained_at ? ` (trained ${when(version.trained_at)})` : ''}`];
    const bandit = version.bandit;
    const policies = version.policies?.length ? version.policies : Object.keys(bandit?.arms ?? {});
    if (policies.length) {
        lines.push(`Policies${bandit ? ` (bandit: ${bandit.episodes} settled edits)` : ''}:`);
        for (const policy of policies) {
            const arm = bandit?.arms?.[policy];
            const parts = [
                `validation log-loss ${cost(version.validation_log_loss?.[policy])}`,
                `cost ${cost(version.validation?.[policy])}`,
            ];
            if (arm) {
                parts.push(`bandit ${cost(arm.mean_cost)} over ${arm.n} edits`, `index ${cost(arm.index)}`);
            }
            lines.push(`  ${policy}${nextPick(bandit) === policy ? ' (next)' : ''}: ${parts.join(', ')}`);
        }
    }
    return lines;
}

/** The policy the bandit would pick next overall (lowest index), if it says. */
export function nextPick(bandit: BanditSummary | undefined): string | undefined {
    let best: string | undefined;
    let bestIndex = Infinity;
    for (const [policy, arm] of Object.entries(bandit?.arms ?? {})) {
        if (typeof arm.index === 'number' && arm.index < bestIndex) {
            best = policy;
            bestIndex = arm.index;
        }
    }
    return best;
}

function cell(text: string): string {
    return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ') || '(none)';
}

/** A Markdown table whose columns line up in the source too (the document opens as text). */
export function markdownTable(header: string[], rows: string[][], numeric: boolean[]): string[] {
    const all = [header, ...rows].map((row) => row.map(cell));
    const widths = header.map((_, i) => Math.max(3, ...all.map((row) => (row[i] ?? '').length)));
    const line = (row: string[]) =>
        `| ${row.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
    const rule = `|${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
    return [line(all[0]), rule, ...all.slice(1).map(line)];
}

function table(title: string, groups: Record<string, StatsFigures> | undefined, label: string): string[] {
    const rows = Object.entries(groups ?? {});
    if (!rows.length) {
        return [];
    }
    return [
        `## ${title}`,
        '',
        ...markdownTable(
            [label, 'suggestions', 'accepted', 'acceptance', 'settled edits', 'mean edit cost'],
            rows.map(([name, f]) => [
                name,
                String(f.suggestions ?? 0),
                String(f.accepted ?? 0),
                percent(f.acceptance_rate),
                String(f.outcomes ?? 0),
                cost(f.mean_cost),
            ]),
            [false, true, true, true, true, true],
        ),
        '',
    ];
}

/** The statistics document (Markdown): the CLI's figures plus the server's last status payload. */
export function statisticsMarkdown(stats: Stats, status: StatusPayload | undefined, now = new Date()): string {
    const total = stats.total ?? {};
    const lines = [
        '# Redline statistics',
        '',
        `Accepted suggestions: ${total.accepted ?? 0} of ${total.suggestions ?? 0} shown ` +
            `(acceptance rate ${percent(total.acceptance_rate)})`,
        '',
        `Settled edits: ${total.outcomes ?? 0}, mean edit cost ${cost(total.mean_cost)} ` +
            `(word level; 0 = kept as suggested, lower is better)`,
        '',
        `As of ${when(now.getTime() / 1000)}.`,
        '',
        ...table('By language', stats.by_language, 'language'),
        ...table('By policy', stats.by_policy, 'policy'),
    ];
    const kinds = Object.entries(stats.by_kind ?? {});
    if (kinds.length) {
        lines.push(
            '## Settled edits by outcome',
            '',
            ...markdownTable(
                ['outcome', 'edits', 'mean edit cost'],
                kinds.map(([kind, f]) => [kind, String(f.outcomes ?? 0), cost(f.mean_cost)]),
                [false, true, true],
            ),
            '',
        );
    }
    lines.push(...versionSection(status));
    lines.push(...table('By day', stats.by_day, 'day'));
    return lines.join('\n');
}

function versionSection(status: StatusPayload | undefined): string[] {
    const version = status?.version;
    if (!version) {
        return [
            '## Model',
            '',
            status ? `The server reports no model version yet (${status.state}).` : 'The server is not running.',
            '',
        ];
    }
    const out = ['## Active model version', '', `- Version: \`${version.id}\``];
    if (version.trained_at) {
        out.push(`- Trained: ${when(version.trained_at)}`);
    }
    const edits = Object.entries(version.edits ?? {});
    if (edits.length) {
        out.push(`- Edits: ${edits.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    }
    const running = runningTraining(status?.training);
    if (running) {
        out.push(`- Retraining now: ${running.message || trainingLabel(running)}`);
    }
    const bandit = version.bandit;
    if (bandit) {
        out.push(`- Bandit: ${bandit.episodes} settled edits since this version went live`);
    }
    const pick = nextPick(bandit);
    const policies = version.policies?.length ? version.policies : Object.keys(bandit?.arms ?? {});
    out.push(
        '',
        ...markdownTable(
            ['policy', 'validation log-loss', 'validation cost', 'live edits', 'bandit mean cost', 'bandit index'],
            policies.map((policy) => {
                const arm = bandit?.arms?.[policy];
                return [
                    `${policy}${pick === policy ? ' (next)' : ''}`,
                    cost(version.validation_log_loss?.[policy]),
                    cost(version.validation?.[policy]),
                    arm ? String(arm.n) : '–',
                    cost(arm?.mean_cost),
                    cost(arm?.index),
                ];
            }),
            [false, true, true, true, true, true],
        ),
        '',
        'Costs are mean word-level edit costs (lower is better). Validation ranks policies by log-loss ' +
            '(nats per token of your edited texts): your edits keep the wording of the answers you were ' +
            'shown, so validation cost favours whichever policy wrote them. A new version tries its ' +
            'policies in log-loss order; then for each suggestion the bandit picks the policy with the ' +
            'lowest index.',
        '',
    );
    return out;
}
