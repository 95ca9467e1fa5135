"""DLMS image transfer (class 18) between the adapter and the simulator over TCP, with LLS and HLS-GMAC."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.dlms import DlmsCommunicationError, DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, SecurityMode
from edge.dlms import InvocationCounterStore, MeterModel
from edge.dlms.client import DlmsAssociation
from edge.dlms.image_transfer import ImageTransferClient, ImageTransferError
from edge.dlms.sim_firmware import ImageTransferStatus, SimFirmware, build_sim_image, image_version
from tests.edge.dlms.conftest import server_security

IDENTIFIER = b"sim-meter-2.1.0"
IMAGE = build_sim_image("2.1.0", bytes(range(256)) * 40)  # 10,250 bytes: 21 blocks of 512


def test_sim_image_header_round_trips() -> None:
    assert image_version(build_sim_image("3.0.1-rc1", b"\x00" * 10)) == "3.0.1-rc1"
    assert image_version(b"GWFW") is None
    assert image_version(b"GWFW\x09abc") is None
    assert image_version(b"not an image at all") is None
    with pytest.raises(ValueError):
        build_sim_image("")


@pytest.mark.parametrize("mode", [SecurityMode.LLS, SecurityMode.HLS_GMAC])
async def test_image_transfer_activates_the_new_version(model: MeterModel, mode: SecurityMode,
                                                        counters: InvocationCounterStore,
                                                        config_for: Callable[..., DlmsMeterConfig]) -> None:
    async with DlmsMeterSimulator(model=model, security=server_security(mode)) as sim:
        adapter = DlmsMeterAdapter(config=config_for(sim), counters=counters)
        assert await adapter.read_firmware_version() == "1.0.0"
        report = await adapter.update_firmware(identifier=IDENTIFIER, image=IMAGE)
        assert (report.block_size, report.blocks_total, report.blocks_sent, report.resumed) == (512, 21, 21, False)
        assert await adapter.read_firmware_version() == "2.1.0"
    assert model.firmware.image() == IMAGE
    assert model.firmware.status is ImageTransferStatus.ACTIVATION_SUCCESSFUL


async def test_transfer_cut_by_a_dropped_connection_resumes_with_the_missing_blocks(
        lls_meter: DlmsMeterSimulator, model: MeterModel, config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    # AARQ, block size, status, activate info, initiate, then blocks: the 14th frame is never answered.
    lls_meter.drop_after_frames = 14
    with pytest.raises(DlmsCommunicationError):
        await adapter.update_firmware(identifier=IDENTIFIER, image=IMAGE)
    assert model.firmware.status is ImageTransferStatus.INITIATED
    had = len(model.firmware.blocks)
    assert 0 < had < 21
    received_before = model.firmware.blocks_received
    report = await adapter.update_firmware(identifier=IDENTIFIER, image=IMAGE)
    assert report.resumed and report.blocks_sent == 21 - had
    assert model.firmware.blocks_received - received_before == 21 - had
    assert await adapter.read_firmware_version() == "2.1.0"


async def test_another_image_under_way_is_not_resumed_but_restarted(
        lls_meter: DlmsMeterSimulator, model: MeterModel, config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    lls_meter.drop_after_frames = 10
    with pytest.raises(DlmsCommunicationError):
        await adapter.update_firmware(identifier=b"other-image", image=IMAGE)
    report = await adapter.update_firmware(identifier=IDENTIFIER, image=IMAGE)
    assert not report.resumed and report.blocks_sent == 21
    assert model.firmware.identifier == IDENTIFIER


async def test_verify_failure_keeps_the_old_version(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                   config_for: Callable[..., DlmsMeterConfig]) -> None:
    model.firmware.fail_verify = True
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    with pytest.raises(ImageTransferError) as caught:
        await adapter.update_firmware(identifier=IDENTIFIER, image=IMAGE)
    assert caught.value.stage == "verify" and "meter-0042" in str(caught.value)
    assert model.firmware.status is ImageTransferStatus.VERIFICATION_FAILED
    assert await adapter.read_firmware_version() == "1.0.0"


async def test_image_the_meter_cannot_read_fails_verification(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                              config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    with pytest.raises(ImageTransferError) as caught:
        await adapter.update_firmware(identifier=IDENTIFIER, image=b"\x7fELF" + bytes(2000))
    assert caught.value.stage == "verify"
    assert model.firmware.version == "1.0.0"


async def test_activation_failure_is_reported_as_such(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                      config_for: Callable[..., DlmsMeterConfig]) -> None:
    model.firmware.fail_activate = True
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    with pytest.raises(ImageTransferError) as caught:
        await adapter.update_firmware(identifier=IDENTIFIER, image=IMAGE)
    assert caught.value.stage == "activate"
    assert await adapter.read_firmware_version() == "1.0.0"


async def test_slow_verify_and_activate_are_polled_through_the_status(
        config_for: Callable[..., DlmsMeterConfig]) -> None:
    model = MeterModel(firmware=SimFirmware(verify_seconds=0.3, activate_seconds=0.3, block_size=256))
    async with DlmsMeterSimulator(model=model, security=server_security(SecurityMode.LLS)) as sim:
        config = config_for(sim)
        async with DlmsAssociation(config=config) as link:
            client = ImageTransferClient(link=link, poll_interval=0.05)
            report = await client.transfer(identifier=IDENTIFIER, image=IMAGE)
            assert report.block_size == 256 and report.blocks_total == 41
            await client.verify()
            assert await client.status() is ImageTransferStatus.VERIFICATION_SUCCESSFUL
            await client.activate()
            assert await client.status() is ImageTransferStatus.ACTIVATION_SUCCESSFUL
    assert model.firmware.version == "2.1.0"


def test_block_of_the_wrong_length_or_number_is_refused() -> None:
    firmware = SimFirmware(block_size=4)
    assert firmware.block(0, b"abcd") != 0  # not initiated
    firmware.initiate(b"x", 10)
    assert firmware.block(3, b"ab") != 0       # no block 3 in 10 bytes of 4-byte blocks
    assert firmware.block(0, b"abc") != 0      # short block
    assert firmware.block(2, b"ab") == 0       # the short last block
    assert firmware.transferred_bits() == "001" and firmware.first_not_transferred() == 0
