// Workbook fixtures shared by `source::workbook`'s unit tests and the
// integration tests (`tests/it/workbooks.rs`), each of which `include!`s
// this file: what a writer crate does not make.

/// `bytes` (a zip archive) with the part `name` edited: a formula without
/// its saved result, the 1904 date system.
pub fn rewrite_part(bytes: &[u8], name: &str, edit: impl Fn(String) -> String) -> Vec<u8> {
    use std::io::{Read as _, Write as _};
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for index in 0..archive.len() {
        let mut part = archive.by_index(index).unwrap();
        let mut text = String::new();
        part.read_to_string(&mut text).unwrap();
        let part_name = part.name().to_owned();
        if part_name == name {
            let edited = edit(text.clone());
            assert_ne!(edited, text, "the edit of {name} changed nothing");
            text = edited;
        }
        out.start_file(part_name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(text.as_bytes()).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// A compound file holding an `EncryptedPackage` stream, as Office saves a
/// password-protected `.xlsx`.
pub fn encrypted_workbook() -> Vec<u8> {
    use std::io::Write as _;
    let mut file = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
    file.create_stream("/EncryptionInfo")
        .unwrap()
        .write_all(&[4, 0, 4, 0])
        .unwrap();
    file.create_stream("/EncryptedPackage")
        .unwrap()
        .write_all(&[0x5a; 4096])
        .unwrap();
    file.flush().unwrap();
    file.into_inner().into_inner()
}

/// A minimal OpenDocument spreadsheet whose one tab, `Sheet1`, holds `rows`
/// (`<table:table-row>` elements).
pub fn ods_archive(rows: &str) -> Vec<u8> {
    use std::io::Write as _;
    // calamine takes no whitespace between a row's cells.
    let rows: String = rows.lines().map(str::trim).collect();
    let content = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><office:document-content \
         xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
         xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
         xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" office:version=\"1.2\"><office:body>\
         <office:spreadsheet><table:table table:name=\"Sheet1\">{rows}</table:table></office:spreadsheet>\
         </office:body></office:document-content>"
    );
    let manifest = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><manifest:manifest \
         xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\">\
         <manifest:file-entry manifest:full-path=\"/\" \
         manifest:media-type=\"application/vnd.oasis.opendocument.spreadsheet\"/>\
         <manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/>\
         </manifest:manifest>";
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    out.start_file("mimetype", stored).unwrap();
    out.write_all(b"application/vnd.oasis.opendocument.spreadsheet").unwrap();
    for (name, text) in [("META-INF/manifest.xml", manifest), ("content.xml", content.as_str())] {
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(text.as_bytes()).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// One BIFF12 record: its type and size in Excel's variable-length
/// encoding (7 bits a byte, high bit: more follows), then its data.
fn xlsb_record(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    match kind < 0x80 {
        true => out.push(kind as u8),
        false => out.extend_from_slice(&[(kind & 0x7F) as u8 | 0x80, (kind >> 7) as u8]),
    }
    let mut size = data.len();
    loop {
        let byte = (size & 0x7F) as u8;
        size >>= 7;
        out.push(if size > 0 { byte | 0x80 } else { byte });
        if size == 0 {
            break;
        }
    }
    out.extend_from_slice(data);
}

/// An `XLWideString`: UTF-16 code units counted, then the units.
fn xlsb_wide(text: &str) -> Vec<u8> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut out = (units.len() as u32).to_le_bytes().to_vec();
    units.iter().for_each(|unit| out.extend_from_slice(&unit.to_le_bytes()));
    out
}

/// A cell record's head: its column, then its style (24 bits) and flags.
fn xlsb_cell(column: u32, style: u32) -> Vec<u8> {
    let mut out = column.to_le_bytes().to_vec();
    out.extend_from_slice(&style.to_le_bytes());
    out
}

/// A small Excel binary workbook (`.xlsb`), built record by record after
/// [MS-XLSB], since no free tool writes the format: a hidden first tab
/// `Lookups` and a tab `Deals` whose header is `Client, Stage, Discovery
/// Date, Expected MRR, Won, Check` and whose one row is `Acme`, `B Legals`,
/// 2025-01-10 (a serial with the built-in date format 14), 1234.5, TRUE and
/// `#N/A`.
pub fn xlsb_workbook() -> Vec<u8> {
    use std::io::Write as _;
    let mut workbook = Vec::new();
    for (hidden, tab, relation) in [(1u32, "Lookups", "rId1"), (0, "Deals", "rId2")] {
        let mut bundle = hidden.to_le_bytes().to_vec();
        bundle.extend_from_slice(&[0; 4]);
        bundle.extend(xlsb_wide(relation));
        bundle.extend(xlsb_wide(tab));
        xlsb_record(&mut workbook, 0x009C, &bundle); // BrtBundleSh
    }
    xlsb_record(&mut workbook, 0x0090, &[]); // BrtEndBundleShs
    xlsb_record(&mut workbook, 0x009D, &[0; 8]); // BrtCalcProp
    let mut styles = Vec::new();
    xlsb_record(&mut styles, 0x0267, &0u32.to_le_bytes()); // BrtBeginFmts: none custom
    xlsb_record(&mut styles, 0x0269, &2u32.to_le_bytes()); // BrtBeginCellXFs
    for format in [0u16, 14] {
        let mut xf = vec![0, 0];
        xf.extend_from_slice(&format.to_le_bytes());
        xf.extend_from_slice(&[0; 12]);
        xlsb_record(&mut styles, 0x002F, &xf); // BrtXF: General, then a date
    }
    let sheet = |rows: &[Vec<(u16, Vec<u8>)>]| {
        let mut out = Vec::new();
        xlsb_record(&mut out, 0x0081, &[]); // BrtBeginSheet
        xlsb_record(&mut out, 0x0094, &[0; 16]); // BrtWsDim
        xlsb_record(&mut out, 0x0091, &[]); // BrtBeginSheetData
        for (row, cells) in rows.iter().enumerate() {
            let mut header = (row as u32).to_le_bytes().to_vec();
            header.extend_from_slice(&[0; 13]);
            xlsb_record(&mut out, 0x0000, &header); // BrtRowHdr
            for (kind, data) in cells {
                xlsb_record(&mut out, *kind, data);
            }
        }
        xlsb_record(&mut out, 0x0092, &[]); // BrtEndSheetData
        out
    };
    let text = |column: u32, value: &str| {
        let mut data = xlsb_cell(column, 0);
        data.extend(xlsb_wide(value));
        (0x0006u16, data) // BrtCellSt
    };
    let real = |column: u32, style: u32, value: f64| {
        let mut data = xlsb_cell(column, style);
        data.extend_from_slice(&value.to_le_bytes());
        (0x0005u16, data) // BrtCellReal
    };
    let mut labels: Vec<(u16, Vec<u8>)> = Vec::new();
    for (column, label) in ["Client", "Stage", "Discovery Date", "Expected MRR", "Won", "Check"]
        .into_iter()
        .enumerate()
    {
        labels.push(text(column as u32, label));
    }
    let mut won = xlsb_cell(4, 0);
    won.push(1);
    let mut not_available = xlsb_cell(5, 0);
    not_available.push(0x2A);
    let deal = vec![
        text(0, "Acme"),
        text(1, "B Legals"),
        real(2, 1, 45667.0),
        real(3, 0, 1234.5),
        (0x0004, won),           // BrtCellBool
        (0x0003, not_available), // BrtCellError
    ];
    let rels = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships \
         xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
         <Relationship Id=\"rId1\" Target=\"worksheets/sheet1.bin\"/>\
         <Relationship Id=\"rId2\" Target=\"worksheets/sheet2.bin\"/></Relationships>";
    let parts: [(&str, Vec<u8>); 5] = [
        ("xl/workbook.bin", workbook),
        ("xl/_rels/workbook.bin.rels", rels.as_bytes().to_vec()),
        ("xl/styles.bin", styles),
        ("xl/worksheets/sheet1.bin", sheet(&[vec![text(0, "Lost")]])),
        ("xl/worksheets/sheet2.bin", sheet(&[labels, deal])),
    ];
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in parts {
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap().into_inner()
}
