"""kite/access_token: one partition per Kite app, materialized by logging the app in.

The login (Selenium through headless Chromium, or the HTTP login API; ``login_method`` of
[kite.apps.<app>]) yields a request_token that kiteconnect's ``generate_session`` turns into
the day's access token. The token goes to the encrypted token store (tick_assets.store.tokens)
and nowhere else: the metadata shows the app, the login time, the expiry and the method only.
Everything that needs a token reads it with ``KiteResource.access_token(app)``, which raises
TokenMissingError / TokenExpiredError saying to materialize this asset.

No retries: a wrong password retried can lock the Kite account. A failed login names the app
and the step, and on the Selenium path the page's screenshot (under
TICK_ASSETS_HOME/logs/kite_login/, owner-only).
"""

from pathlib import Path

import dagster as dg
from kiteconnect import exceptions as kite_exceptions
from requests import RequestException

from tick_assets.config import SettingsError
from tick_assets.defs.kite.partitions import kite_apps
from tick_assets.defs.kite.resources import KiteResource
from tick_assets.defs.resources import SettingsResource
from tick_assets.sources.kite.login import KiteLoginError
from tick_assets.store.tokens import TokenRecord, TokenStoreError

SCREENSHOT_DIR = Path("logs") / "kite_login"


def screenshot_dir(home: str | Path) -> Path:
    return Path(home) / SCREENSHOT_DIR


@dg.asset(
    key_prefix=["kite"],
    name="access_token",
    group_name="kite",
    partitions_def=kite_apps,
    kinds={"python"},
    description=(
        "The Kite app's access token for the day (expires 06:00 IST the next day), obtained by "
        "logging in (Selenium or HTTP + TOTP) and kept encrypted in the token store under "
        "TICK_ASSETS_HOME/secrets/. Metadata: app, login time, expiry, method; never the token."
    ),
)
def access_token(
    context: dg.AssetExecutionContext, kite: KiteResource, settings: SettingsResource
) -> dg.MaterializeResult:
    app = context.partition_key
    try:
        store = kite.token_store()
        result, fallback = kite.login(app, screenshot_dir(settings.home))
        record = TokenRecord(
            app=app,
            access_token=result.access_token,
            login_time=result.login_time,
            expires_at=result.expires_at,
            method=result.method,
        )
        store.save(record)
    except KiteLoginError as exc:
        metadata = {"app": app, "step": exc.step}
        if exc.screenshot is not None:
            metadata["screenshot"] = dg.MetadataValue.path(str(exc.screenshot))
        raise dg.Failure(description=str(exc), metadata=metadata, allow_retries=False) from None
    except (SettingsError, TokenStoreError) as exc:
        raise dg.Failure(description=str(exc), metadata={"app": app}, allow_retries=False) from None
    if fallback:
        context.log.warning(f"kite/access_token[{app}]: {fallback}")
    shown = record.metadata()
    context.log.info(
        f"kite/access_token[{app}]: logged in by {shown['method']} at {shown['login_time']}, "
        f"valid until {shown['expires_at']} (stored encrypted in {store.path})"
    )
    return dg.MaterializeResult(
        metadata={key: dg.MetadataValue.text(v) for key, v in shown.items()}
    )


@dg.asset_check(
    asset=access_token,
    partitions_def=kite_apps,
    description=(
        "The stored token is unexpired and Kite accepts it (GET /user/profile with "
        "kiteconnect); fails with the reason otherwise."
    ),
)
def access_token_accepted(
    context: dg.AssetCheckExecutionContext, kite: KiteResource
) -> dg.AssetCheckResult:
    app = context.partition_key
    try:
        record = kite.token_record(app)
        kite.kite_connect(app).profile()
    except (TokenStoreError, SettingsError) as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc), metadata={"app": app})
    except kite_exceptions.KiteException as exc:
        return dg.AssetCheckResult(
            passed=False,
            description=f"Kite refused app {app!r}'s stored token: {type(exc).__name__}: {exc}",
            metadata={"app": app},
        )
    except RequestException as exc:
        return dg.AssetCheckResult(
            passed=False,
            description=f"Kite was unreachable checking app {app!r}'s token: {type(exc).__name__}",
            metadata={"app": app},
        )
    shown = record.metadata()
    return dg.AssetCheckResult(
        passed=True,
        metadata={"app": app, "expires_at": shown["expires_at"], "method": shown["method"]},
    )
