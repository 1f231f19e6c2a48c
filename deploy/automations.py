"""Create or update the alerting automations declared in deploy/automations.yaml.

Called by the setup step (`python -m deploy.work_pool`); can also be run alone:
    python -m deploy.automations
Needs PREFECT_API_URL; the notification target comes from TAXI_ALERT_WEBHOOK_URL.

- The notification block (a Custom Webhook block named in the file) posts
  {"subject": ..., "body": ...} as JSON to the webhook URL. The URL often carries a
  token (Slack and Teams webhooks do), so it is stored among the block's secret values
  and the block's own URL field only refers to it: the API and UI show it obfuscated,
  and nothing here prints it.
- Automations are looked up by name: an existing one is updated in place (extra copies
  of the same name are deleted), a missing one is created. Re-running the setup leaves
  exactly the automations of the file.
- With TAXI_ALERT_WEBHOOK_URL unset, an existing block is kept as it is (it may have been
  set up in the UI); with no block either, there is nothing to notify and only the
  automations that notify nobody are created, such as the zombie detection that marks a run
  Crashed once its heartbeats stop (the setup says so).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from taxi.settings import ALERT_WEBHOOK_URL_ENV, Settings, secret_value

AUTOMATIONS_FILE = Path(__file__).with_name("automations.yaml")
WEBHOOK_URL_ENV = ALERT_WEBHOOK_URL_ENV
# The name of the block's secret value holding the URL (a template placeholder in `url`).
_URL_SECRET = "webhook_url"


class AlertSetupError(ValueError):
    """The automations file or the webhook setting cannot be used; the message says why."""


def load_automations_file(path: Path = AUTOMATIONS_FILE) -> tuple[str, list[dict[str, Any]]]:
    """The notification block's name and the automations (as dicts) declared in `path`."""
    try:
        declared = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise AlertSetupError(f"{path}: cannot read the automations file ({error})") from error
    if not isinstance(declared, dict) or not isinstance(declared.get("notification_block"), str):
        raise AlertSetupError(
            f"{path}: expected a mapping with 'notification_block' (a block name) and 'automations'"
        )
    automations = declared.get("automations")
    if not isinstance(automations, list) or not all(
        isinstance(a, dict) and a.get("name") for a in automations
    ):
        raise AlertSetupError(
            f"{path}: 'automations' must be a list of mappings, each with a 'name'"
        )
    names = [a["name"] for a in automations]
    if len(set(names)) != len(names):
        raise AlertSetupError(f"{path}: automation names must be unique, got {names}")
    return declared["notification_block"], automations


def check_webhook_url(url: str) -> str:
    """An http(s) URL with a host. The error never repeats the URL (it may hold a token)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AlertSetupError(f"{WEBHOOK_URL_ENV} must be an http:// or https:// URL with a host")
    return url.strip()


async def save_notification_block(block_name: str, webhook_url: str) -> Any:
    """Create or overwrite the Custom Webhook block; returns its block document id."""
    block = CustomWebhookNotificationBlock(
        name=block_name,
        url="{{" + _URL_SECRET + "}}",  # a Jinja placeholder for the secret value
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        secrets={_URL_SECRET: check_webhook_url(webhook_url)},
    )
    return await block.asave(block_name, overwrite=True)


async def _existing_block_id(block_name: str) -> Any | None:
    try:
        return (await CustomWebhookNotificationBlock.aload(block_name))._block_document_id
    except ValueError:  # Prefect's "Unable to find block document named ..."
        return None


async def apply_automations(block_id: Any, declared: list[dict[str, Any]]) -> list[Automation]:
    """Create or update each declared automation, its notifications sent through `block_id`."""
    applied = []
    async with get_client() as client:
        for spec in declared:
            automation = _with_block(spec, block_id)
            existing = await client.read_automations_by_name(name=automation.name)
            if existing:
                for duplicate in existing[1:]:
                    try:
                        await client.delete_automation(duplicate.id)
                    except ObjectNotFound:  # deleted meanwhile: the goal either way
                        pass
                automation.id = existing[0].id
                await automation.aupdate()
            else:
                await automation.acreate()
            applied.append(automation)
    return applied


def _notifies(spec: dict[str, Any]) -> bool:
    return any(action.get("type") == "send-notification" for action in spec.get("actions", []))


def _with_block(spec: dict[str, Any], block_id: Any) -> Automation:
    actions = []
    for action in spec.get("actions", []):
        if action.get("type") == "send-notification":
            action = {**action, "block_document_id": block_id}
        actions.append(action)
    try:
        return Automation.model_validate({**spec, "actions": actions})
    except ValueError as error:
        raise AlertSetupError(
            f"automation {spec.get('name')!r} in {AUTOMATIONS_FILE.name} is not valid: {error}"
        ) from error


async def setup_automations(
    webhook_url: str | None = None, path: Path = AUTOMATIONS_FILE
) -> list[Automation]:
    """Save the notification block (when a webhook URL is given, else from the environment)
    and create or update the automations of `path`. Returns them (only those that notify
    nobody when no notification target is configured at all)."""
    block_name, declared = load_automations_file(path)
    if webhook_url is None:
        webhook_url = secret_value(Settings.from_env().alert_webhook_url)
    if webhook_url and webhook_url.strip():
        block_id = await save_notification_block(block_name, webhook_url)
    else:
        block_id = await _existing_block_id(block_name)
        if block_id is None:
            print(
                f"alerts not set up: set {WEBHOOK_URL_ENV} (see docs/monitoring.md) and re-run the setup"
            )
            silent = await apply_automations(None, [a for a in declared if not _notifies(a)])
            if silent:
                print(
                    f"automations {', '.join(a.name for a in silent)} set up (they notify nobody)"
                )
            return silent
    applied = await apply_automations(block_id, declared)
    print(
        f"automations {', '.join(a.name for a in applied)} set up; alerts go through the block {block_name!r}"
    )
    return applied


def main() -> None:
    asyncio.run(setup_automations())


if __name__ == "__main__":
    main()
