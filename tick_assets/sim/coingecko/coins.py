"""The simulated crypto world: real top coins as CoinGecko lists them and Binance trades them.

One table serves both simulators so they agree: CoinGecko's /coins/markets ranks these coins
by a market cap that drifts day by day (so coins enter and leave the top 100, and new coins
appear on their listing day), and Binance's exchangeInfo, klines and bulk archive list the
USDT pairs in the ``binance`` column. The table keeps the awkward cases a real mapping meets:
stablecoins and wrapped or staked tokens (some of them with a Binance USDT pair), coins with no
Binance pair, a pair delisted in the past (XMR, status BREAK), Binance tickers that differ from
the CoinGecko symbol (BTT -> BTTC, SATS -> 1000SATS, RON -> RONIN), and two coins sharing one
symbol (neiro). Figures are approximate early-2025 values; the market is deterministic per seed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

import numpy as np

from tick_assets.sim import rng

# id,symbol,name,price_usd,market_cap_busd,kind,binance_base,listed,binance_status
# kind: coin | stable | wrapped | staked. binance_base empty: no USDT pair on Binance.
# listed: first day on CoinGecko and, with a base, on Binance. status: "" (TRADING) or
# BREAK:<day> (pair delisted that day).
_TABLE = """\
bitcoin,btc,Bitcoin,95000,1880,coin,BTC,2017-08-17,
ethereum,eth,Ethereum,3300,400,coin,ETH,2017-08-17,
tether,usdt,Tether,1,140,stable,,2017-08-17,
ripple,xrp,XRP,2.3,132,coin,XRP,2018-05-04,
binancecoin,bnb,BNB,690,100,coin,BNB,2017-11-06,
solana,sol,Solana,190,92,coin,SOL,2020-08-11,
usd-coin,usdc,USDC,1,52,stable,USDC,2018-12-15,
dogecoin,doge,Dogecoin,0.33,49,coin,DOGE,2019-07-05,
cardano,ada,Cardano,0.95,33,coin,ADA,2018-04-17,
staked-ether,steth,Lido Staked Ether,3300,31,staked,,2020-12-22,
tron,trx,TRON,0.25,21,coin,TRX,2018-06-11,
avalanche-2,avax,Avalanche,38,15,coin,AVAX,2020-09-22,
wrapped-bitcoin,wbtc,Wrapped Bitcoin,95000,14,wrapped,WBTC,2019-02-01,
chainlink,link,Chainlink,22,14,coin,LINK,2019-01-16,
shiba-inu,shib,Shiba Inu,0.000022,13,coin,SHIB,2021-05-10,
the-open-network,ton,Toncoin,5.5,13,coin,TON,2024-08-08,
stellar,xlm,Stellar,0.42,12.8,coin,XLM,2018-05-31,
sui,sui,Sui,4.2,12.5,coin,SUI,2023-05-03,
wrapped-steth,wsteth,Wrapped stETH,3900,12,staked,,2021-02-10,
hedera-hashgraph,hbar,Hedera,0.30,11.5,coin,HBAR,2019-09-29,
polkadot,dot,Polkadot,7,10.5,coin,DOT,2020-08-18,
bitcoin-cash,bch,Bitcoin Cash,450,8.9,coin,BCH,2019-11-28,
leo-token,leo,LEO Token,9.5,8.8,coin,,2019-05-20,
bitget-token,bgb,Bitget Token,6,8.4,coin,,2021-07-29,
uniswap,uni,Uniswap,13.5,8.1,coin,UNI,2020-09-17,
weth,weth,WETH,3300,8,wrapped,,2018-01-01,
pepe,pepe,Pepe,0.000019,8,coin,PEPE,2023-05-05,
litecoin,ltc,Litecoin,105,7.9,coin,LTC,2017-12-13,
hyperliquid,hype,Hyperliquid,21,7,coin,,2024-11-29,
usds,usds,USDS,1,6.5,stable,,2024-09-18,
near,near,NEAR Protocol,5.2,6.2,coin,NEAR,2020-10-14,
official-trump,trump,Official Trump,30,6,coin,TRUMP,2025-01-19,
ethena-usde,usde,Ethena USDe,1,6,stable,,2024-02-19,
wrapped-eeth,weeth,Wrapped eETH,3450,6,staked,,2023-11-15,
dai,dai,Dai,1,5.3,stable,,2017-12-18,
aptos,apt,Aptos,9,5.2,coin,APT,2022-10-19,
internet-computer,icp,Internet Computer,10.5,5,coin,ICP,2021-05-11,
aave,aave,Aave,330,5,coin,AAVE,2020-10-15,
ethereum-classic,etc,Ethereum Classic,27,4.1,coin,ETC,2018-06-12,
ondo-finance,ondo,Ondo,1.3,4.1,coin,ONDO,2025-01-17,
crypto-com-chain,cro,Cronos,0.14,3.8,coin,,2018-12-14,
monero,xmr,Monero,200,3.7,coin,XMR,2019-03-01,BREAK:2024-02-20
vechain,vet,VeChain,0.045,3.6,coin,VET,2018-07-25,
mantle,mnt,Mantle,1.1,3.6,coin,,2023-07-17,
render-token,render,Render,7,3.6,coin,RENDER,2024-07-22,
polygon-ecosystem-token,pol,POL (ex-MATIC),0.45,3.5,coin,POL,2024-09-13,
fetch-ai,fet,Artificial Superintelligence Alliance,1.3,3.3,coin,FET,2019-02-28,
bittensor,tao,Bittensor,450,3.3,coin,TAO,2024-04-11,
arbitrum,arb,Arbitrum,0.75,3.2,coin,ARB,2023-03-23,
kaspa,kas,Kaspa,0.12,3,coin,,2022-05-27,
okb,okb,OKB,50,3,coin,,2019-04-30,
algorand,algo,Algorand,0.35,3,coin,ALGO,2019-06-21,
filecoin,fil,Filecoin,5,3,coin,FIL,2020-10-15,
ethena,ena,Ethena,0.85,2.6,coin,ENA,2024-04-02,
cosmos,atom,Cosmos Hub,6.5,2.5,coin,ATOM,2019-04-29,
first-digital-usd,fdusd,First Digital USD,1,2.4,stable,FDUSD,2023-07-26,
optimism,op,Optimism,1.8,2.4,coin,OP,2022-06-01,
virtuals-protocol,virtual,Virtuals Protocol,2.5,2.4,coin,,2024-10-17,
jito-staked-sol,jitosol,Jito Staked SOL,210,2.2,staked,,2022-11-01,
bonk,bonk,Bonk,0.000028,2.1,coin,BONK,2023-12-15,
injective-protocol,inj,Injective,22,2.1,coin,INJ,2020-10-21,
usd1-wlfi,usd1,USD1,1,2.1,stable,USD1,2025-05-22,
stacks,stx,Stacks,1.4,2.1,coin,STX,2019-10-25,
celestia,tia,Celestia,4.5,2,coin,TIA,2023-10-31,
immutable-x,imx,Immutable,1.2,2,coin,IMX,2021-06-24,
theta-token,theta,Theta Network,2,2,coin,THETA,2019-03-18,
the-graph,grt,The Graph,0.2,1.9,coin,GRT,2020-12-17,
pudgy-penguins,pengu,Pudgy Penguins,0.03,1.9,coin,PENGU,2024-12-17,
sei-network,sei,Sei,0.4,1.8,coin,SEI,2023-08-15,
lido-dao,ldo,Lido DAO,1.8,1.6,coin,LDO,2022-05-05,
worldcoin-wld,wld,Worldcoin,2.2,1.6,coin,WLD,2023-07-24,
coinbase-wrapped-btc,cbbtc,Coinbase Wrapped BTC,95000,1.5,wrapped,,2024-09-12,
binance-staked-sol,bnsol,Binance Staked SOL,200,1.5,staked,BNSOL,2024-09-10,
quant-network,qnt,Quant,105,1.5,coin,QNT,2021-07-29,
jasmycoin,jasmy,JasmyCoin,0.03,1.5,coin,JASMY,2022-03-21,
dogwifcoin,wif,dogwifhat,1.5,1.5,coin,WIF,2024-03-05,
floki,floki,FLOKI,0.00015,1.4,coin,FLOKI,2023-05-05,
movement,move,Movement,0.6,1.4,coin,MOVE,2024-12-09,
raydium,ray,Raydium,5,1.4,coin,RAY,2021-08-10,
rocket-pool-eth,reth,Rocket Pool ETH,3700,1.4,staked,,2021-10-14,
pyth-network,pyth,Pyth Network,0.35,1.3,coin,PYTH,2024-02-02,
the-sandbox,sand,The Sandbox,0.55,1.3,coin,SAND,2020-08-14,
gala,gala,GALA,0.035,1.3,coin,GALA,2021-09-13,
sky,sky,Sky,0.06,1.3,coin,,2024-09-18,
tezos,xtz,Tezos,1.2,1.2,coin,XTZ,2019-09-24,
flow,flow,Flow,0.75,1.2,coin,FLOW,2021-07-30,
eos,eos,EOS,0.75,1.15,coin,EOS,2018-05-28,
jupiter-exchange-solana,jup,Jupiter,0.8,1.1,coin,JUP,2024-01-31,
kaia,kaia,Kaia,0.2,1.1,coin,KAIA,2024-10-01,
curve-dao-token,crv,Curve DAO,0.9,1.1,coin,CRV,2020-08-15,
arweave,ar,Arweave,17,1.1,coin,AR,2021-05-14,
iota,iota,IOTA,0.3,1.05,coin,IOTA,2018-05-31,
helium,hnt,Helium,6,1,coin,,2020-06-01,
ethereum-name-service,ens,Ethereum Name Service,30,1,coin,ENS,2021-11-10,
bittorrent,btt,BitTorrent,0.000001,1,coin,BTTC,2022-01-20,
starknet,strk,Starknet,0.35,1,coin,STRK,2024-02-20,
decentraland,mana,Decentraland,0.5,0.95,coin,MANA,2020-08-06,
neo,neo,NEO,13,0.9,coin,NEO,2017-11-20,
axie-infinity,axs,Axie Infinity,6,0.9,coin,AXS,2020-11-04,
zcash,zec,Zcash,55,0.9,coin,ZEC,2019-03-21,
dydx-chain,dydx,dYdX,1.4,0.9,coin,DYDX,2021-09-09,
pendle,pendle,Pendle,5,0.8,coin,PENDLE,2023-07-03,
apecoin,ape,ApeCoin,1.2,0.8,coin,APE,2022-03-17,
chiliz,chz,Chiliz,0.09,0.8,coin,CHZ,2019-07-01,
jito-governance-token,jto,Jito,3,0.8,coin,JTO,2023-12-07,
gnosis,gno,Gnosis,300,0.8,coin,GNO,2021-10-14,
wormhole,w,Wormhole,0.3,0.8,coin,W,2024-04-03,
berachain-bera,bera,Berachain,7,0.75,coin,BERA,2025-02-06,
eigenlayer,eigen,EigenLayer,3.5,0.7,coin,EIGEN,2024-10-01,
ronin,ron,Ronin,1.8,0.7,coin,RONIN,2024-08-27,
mina-protocol,mina,Mina,0.6,0.7,coin,MINA,2021-06-01,
conflux-token,cfx,Conflux,0.15,0.7,coin,CFX,2021-03-30,
synthetix-network-token,snx,Synthetix,2.2,0.7,coin,SNX,2020-07-08,
compound-governance-token,comp,Compound,75,0.65,coin,COMP,2020-06-25,
pancakeswap-token,cake,PancakeSwap,2.3,0.65,coin,CAKE,2021-02-19,
first-neiro-on-ethereum,neiro,Neiro,0.0015,1.6,coin,NEIRO,2024-09-16,
zksync,zk,ZKsync,0.15,0.6,coin,ZK,2024-06-17,
ordinals,ordi,ORDI,30,0.6,coin,ORDI,2023-11-07,
sats-ordinals,sats,SATS (Ordinals),0.0000003,0.6,coin,1000SATS,2023-12-12,
notcoin,not,Notcoin,0.006,0.6,coin,NOT,2024-05-16,
blur,blur,Blur,0.25,0.6,coin,BLUR,2023-11-24,
1inch,1inch,1inch,0.4,0.55,coin,1INCH,2020-12-25,
neiro-3,neiro,Neiro on ETH,0.05,1.25,coin,,2024-08-01,
true-usd,tusd,TrueUSD,1,0.5,stable,TUSD,2019-03-01,
paypal-usd,pyusd,PayPal USD,1,0.5,stable,,2023-08-07,
kava,kava,Kava,0.5,0.5,coin,KAVA,2019-10-25,
livepeer,lpt,Livepeer,14,0.5,coin,LPT,2021-07-12,
trust-wallet-token,twt,Trust Wallet,1,0.45,coin,TWT,2021-01-27,
celo,celo,Celo,0.7,0.4,coin,CELO,2021-01-05,
iotex,iotx,IoTeX,0.04,0.38,coin,IOTX,2019-05-29,
ankr,ankr,Ankr,0.035,0.35,coin,ANKR,2019-03-15,
basic-attention-token,bat,Basic Attention,0.22,0.33,coin,BAT,2019-03-15,
ripple-usd,rlusd,Ripple USD,1,0.3,stable,,2024-12-17,
zilliqa,zil,Zilliqa,0.02,0.32,coin,ZIL,2018-05-10,
harmony,one,Harmony,0.02,0.3,coin,ONE,2019-06-01,
oasis-network,rose,Oasis,0.07,0.45,coin,ROSE,2020-11-19,
skale,skl,SKALE,0.03,0.17,coin,SKL,2020-12-01,
storj,storj,Storj,0.4,0.17,coin,STORJ,2020-06-22,
sushi,sushi,Sushi,0.9,0.25,coin,SUSHI,2020-09-01,
yearn-finance,yfi,yearn.finance,6500,0.22,coin,YFI,2020-08-19,
0x,zrx,0x Protocol,0.35,0.3,coin,ZRX,2019-11-01,
kyber-network-crystal,knc,Kyber Network,0.45,0.08,coin,KNC,2021-01-29,
band-protocol,band,Band Protocol,1.1,0.17,coin,BAND,2019-09-18,
ravencoin,rvn,Ravencoin,0.015,0.22,coin,RVN,2019-05-06,
dash,dash,Dash,30,0.36,coin,DASH,2019-03-28,
holotoken,hot,Holo,0.002,0.35,coin,HOT,2019-04-29,
enjincoin,enj,Enjin Coin,0.2,0.35,coin,ENJ,2019-04-29,
chromaway,chr,Chromia,0.2,0.17,coin,CHR,2020-05-04,
origin-protocol,ogn,Origin Protocol,0.1,0.06,coin,OGN,2020-01-09,
coti,coti,COTI,0.1,0.18,coin,COTI,2020-01-29,
dent,dent,Dent,0.001,0.1,coin,DENT,2019-08-12,
wink,win,WINkLink,0.0001,0.1,coin,WIN,2019-08-01,
swipe,sxp,Solar,0.3,0.18,coin,SXP,2020-07-22,
coin98,c98,Coin98,0.15,0.12,coin,C98,2021-07-23,
my-neighbor-alice,alice,My Neighbor Alice,1,0.09,coin,ALICE,2021-03-15,
audius,audio,Audius,0.15,0.2,coin,AUDIO,2020-10-23,
mask-network,mask,Mask Network,2.5,0.25,coin,MASK,2021-05-25,
space-id,id,SPACE ID,0.3,0.25,coin,ID,2023-03-22,
arkham,arkm,Arkham,0.7,0.2,coin,ARKM,2023-07-18,
cyberconnect,cyber,Cyber,2,0.07,coin,CYBER,2023-08-15,
memecoin-2,meme,Memecoin,0.01,0.4,coin,MEME,2023-11-03,
manta-network,manta,Manta Network,0.6,0.25,coin,MANTA,2024-01-18,
altlayer,alt,AltLayer,0.08,0.25,coin,ALT,2024-01-25,
dymension,dym,Dymension,1.2,0.25,coin,DYM,2024-02-06,
portal-2,portal,Portal,0.2,0.05,coin,PORTAL,2024-02-29,
aevo-exchange,aevo,Aevo,0.2,0.18,coin,AEVO,2024-03-13,
ether-fi,ethfi,ether.fi,1.5,0.3,coin,ETHFI,2024-03-18,
omni-network,omni,Omni Network,3,0.08,coin,OMNI,2024-04-17,
io-net,io,io.net,1.5,0.2,coin,IO,2024-06-11,
lista-dao,lista,Lista DAO,0.3,0.06,coin,LISTA,2024-06-20,
layerzero,zro,LayerZero,3.5,0.4,coin,ZRO,2024-06-20,
banana-gun,banana,Banana Gun,35,0.12,coin,BANANA,2024-07-20,
dogs-2,dogs,DOGS,0.0005,0.25,coin,DOGS,2024-08-26,
hamster-kombat,hmstr,Hamster Kombat,0.003,0.2,coin,HMSTR,2024-09-26,
catizen,cati,Catizen,0.3,0.09,coin,CATI,2024-09-20,
scroll,scr,Scroll,0.7,0.13,coin,SCR,2024-10-22,
act-i-the-ai-prophecy,act,Act I The AI Prophecy,0.3,0.3,coin,ACT,2024-11-11,
peanut-the-squirrel,pnut,Peanut the Squirrel,0.4,0.4,coin,PNUT,2024-11-11,
magic-eden,me,Magic Eden,3,0.4,coin,ME,2024-12-10,
usual,usual,Usual,0.5,0.35,coin,USUAL,2024-12-18,
bio-protocol,bio,Bio Protocol,0.3,0.4,coin,BIO,2025-01-03,
solayer,layer,Solayer,0.8,0.2,coin,LAYER,2025-02-11,
golem,glm,Golem,0.4,0.4,coin,GLM,2019-05-01,
loopring,lrc,Loopring,0.18,0.25,coin,LRC,2019-07-03,
qtum,qtum,Qtum,3,0.3,coin,QTUM,2017-11-01,
icon,icx,ICON,0.15,0.15,coin,ICX,2018-01-01,
ontology,ont,Ontology,0.2,0.18,coin,ONT,2018-03-08,
waves,waves,Waves,1.2,0.13,coin,WAVES,2019-01-01,BREAK:2024-06-04
fantom,ftm,Fantom,0.7,2,coin,FTM,2019-06-10,BREAK:2025-01-13
sonic-3,s,Sonic,0.7,2,coin,S,2025-01-13,
terra-luna-2,luna,Terra,0.3,0.2,coin,LUNA,2022-05-31,
terra-luna,lunc,Terra Luna Classic,0.0001,0.6,coin,LUNC,2022-09-09,
"""

KINDS = ("coin", "stable", "wrapped", "staked")
CATEGORY_KINDS = {
    "stablecoins": ("stable",),
    "wrapped-tokens": ("wrapped",),
    "liquid-staking-tokens": ("staked",),
}
EPOCH_DAY = date(2024, 1, 1)  # market caps drift from this day
DAILY_CAP_SIGMA = 0.03
CAP_PERSISTENCE = 0.995


@dataclass(frozen=True)
class Coin:
    """One row of the catalogue (see the module doc)."""

    index: int
    id: str
    symbol: str
    name: str
    price: float
    market_cap: float
    kind: str
    binance_base: str | None
    listed: date
    delisted: datetime | None

    @property
    def binance_pair(self) -> str | None:
        return f"{self.binance_base}USDT" if self.binance_base else None


def _parse() -> tuple[Coin, ...]:
    coins = []
    reader = csv.reader(io.StringIO(_TABLE))
    for index, row in enumerate(reader):
        cid, sym, name, price, cap, kind, base, listed, status = row
        if kind not in KINDS:
            raise ValueError(f"coin {cid}: kind {kind!r} is not one of {KINDS}")
        delisted = None
        if status:
            state, _, day = status.partition(":")
            if state != "BREAK":
                raise ValueError(f"coin {cid}: status {status!r} must be empty or BREAK:<day>")
            delisted = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
        coins.append(
            Coin(
                index=index,
                id=cid,
                symbol=sym,
                name=name,
                price=float(price),
                market_cap=float(cap) * 1e9,
                kind=kind,
                binance_base=base or None,
                listed=date.fromisoformat(listed),
                delisted=delisted,
            )
        )
    ids = [c.id for c in coins]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate coin id in the catalogue")
    return tuple(coins)


COINS: tuple[Coin, ...] = _parse()
COINS_BY_ID = {c.id: c for c in COINS}


def coin_key(seed: int, coin: Coin) -> np.ndarray:
    """Random-number key of one coin (stable under catalogue reordering: hashed by id)."""
    return rng.key(
        seed, int.from_bytes(coin.id.encode()[:8].ljust(8, b"\0"), "little"), len(coin.id)
    )


@lru_cache(maxsize=8)
def _log_factors(seed: int, days: int) -> np.ndarray:
    """(coins, days+1) log drift of every coin's cap since EPOCH_DAY: a mean-reverting walk.

    AR(1) with daily shocks of DAILY_CAP_SIGMA and a half-life of about 140 days, so caps move
    a few percent a day, ranks near the top-N cut churn, and nothing drifts off for good.
    """
    keys = np.stack([coin_key(seed, c) for c in COINS])
    shocks = rng.normal(rng.key(keys[:, None], np.arange(1, days + 1)[None, :]))
    out = np.zeros((len(COINS), days + 1))
    for d in range(days):
        out[:, d + 1] = CAP_PERSISTENCE * out[:, d] + DAILY_CAP_SIGMA * shocks[:, d]
    return out


def _cap_factors(seed: int, days: int) -> np.ndarray:
    horizon = max(days, 1) + (-max(days, 1)) % 366  # cache per ~year, not per day
    return np.exp(_log_factors(seed, horizon)[:, : days + 1])


def market_on(seed: int, day: date) -> list[dict]:
    """Every coin listed on ``day`` with its price, market cap and volume that day, unsorted.

    Days before EPOCH_DAY use the epoch values. The dict keys follow /coins/markets.
    """
    n = max((day - EPOCH_DAY).days, 0)
    factors = _cap_factors(seed, n)[:, n]
    out = []
    for coin, factor in zip(COINS, factors, strict=True):
        if coin.listed > day:
            continue
        f = 1.0 if coin.kind == "stable" else float(factor)  # a stablecoin's price stays at 1
        cap_f = float(factor)  # its supply (so its cap) drifts like any other
        turnover = 0.02 + 0.06 * float(rng.uniform(rng.key(coin_key(seed, coin), day.toordinal())))
        cap = coin.market_cap * cap_f
        out.append(
            {
                "coin": coin,
                "current_price": coin.price * f,
                "market_cap": cap,
                "total_volume": cap * turnover,
                "circulating_supply": cap / (coin.price * f),
            }
        )
    return out
